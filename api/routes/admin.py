"""Operator routes: API keys of every tenant — list, create (shown once), revoke (refused from the
next request on). Authorised by ``SMOOTHGUARD_ADMIN_TOKEN`` as a bearer token, never by an API key;
with no admin token configured these routes answer 404, as if they did not exist."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from api.deps import ADMIN_TOKEN, RateLimitsDep, SessionDep, SettingsDep, bearer, unauthorized
from api.schemas import COMMON_PROBLEMS, problems
from shared.tenants import create_api_key, get_tenant, key_info, list_api_keys, revoke_api_key


def require_admin(
    request: Request,
    settings: SettingsDep,
    limits: RateLimitsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(ADMIN_TOKEN)],
) -> None:
    """The admin token, compared in constant time; a wrong one counts against the address's limit."""
    if not settings.admin_token:
        raise HTTPException(404, "Not Found")
    token = bearer(credentials) or ""
    if not secrets.compare_digest(token.encode(), settings.admin_token.encode()):
        raise unauthorized(request, limits, "admin token")


router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=COMMON_PROBLEMS, dependencies=[Depends(require_admin)])


class ApiKeyPublic(BaseModel):
    id: uuid.UUID
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    name: str | None
    tenant: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="refreshed at most once a minute")


class ApiKeyCreate(BaseModel):
    tenant: str = Field(min_length=1, max_length=200, description="the tenant's name")
    name: str | None = Field(default=None, max_length=200, description="a label for the key")


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="the key itself: shown this once, stored only hashed")


@router.get(
    "/keys", response_model=list[ApiKeyPublic], responses=problems(_404="no tenant of that name"), name="list_api_keys"
)
def list_keys(session: SessionDep, tenant: Annotated[str | None, Query()] = None) -> list[ApiKeyPublic]:
    """Every API key (of one tenant, by name), oldest first; the keys themselves are not stored."""
    return [ApiKeyPublic.model_validate(info, from_attributes=True) for info in list_api_keys(session, tenant=tenant)]


@router.post(
    "/keys",
    status_code=201,
    response_model=ApiKeyCreated,
    responses=problems(_404="no tenant of that name"),
    name="create_api_key",
)
def create_key(body: ApiKeyCreate, session: SessionDep) -> ApiKeyCreated:
    """A new key for the tenant, returned once."""
    row, key = create_api_key(session, tenant=get_tenant(session, name=body.tenant), name=body.name)
    public = ApiKeyPublic.model_validate(key_info(row, body.tenant), from_attributes=True)
    return ApiKeyCreated(**public.model_dump(), key=key)


@router.post(
    "/keys/{ref}/revoke",
    response_model=ApiKeyPublic,
    responses=problems(_404="no such key", _409="two keys share that prefix"),
    name="revoke_api_key",
)
def revoke_key(ref: str, session: SessionDep) -> ApiKeyPublic:
    """Revoke a key (by id, or by its prefix when no other key shares it): refused from the next
    request on. Revoking a revoked key changes nothing."""
    return ApiKeyPublic.model_validate(revoke_api_key(session, ref), from_attributes=True)
