"""Response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class JobPublic(BaseModel):
    id: UUID
    status: str
    model: str
    prompt: str
    params: dict[str, Any]
    answer: str | None = None
    abstained: bool | None = None
    consensus: dict[str, Any] | None = None
    samples_spent: int | None = None
    rounds_done: int
    error: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    generated_at: datetime | None = None
    finished_at: datetime | None = None
    links: dict[str, str]
