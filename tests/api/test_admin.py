"""API keys managed by an operator — over the admin routes (their own token) and the CLI — and a
revoked key refused from the very next request."""

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from shared.tools.cli import main
from tests.helpers import auth

TOKEN = "admin-token-for-the-tests-0123456789"


@pytest.fixture()
def admin(settings):
    return TestClient(create_app(settings.model_copy(update={"admin_token": TOKEN})))


def test_admin_routes_need_the_admin_token_and_without_one_do_not_exist(settings, keys, admin, client):
    assert client.get("/v1/admin/keys", headers=auth(TOKEN)).status_code == 404  # no SMOOTHGUARD_ADMIN_TOKEN
    for headers in ({}, auth("not-the-token"), auth(keys["alpha"])):
        r = admin.get("/v1/admin/keys", headers=headers)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json", r.text
    assert admin.get("/v1/jobs", headers=auth(TOKEN)).status_code == 401  # nor is it an API key
    assert admin.get("/v1/admin/keys", headers=auth(TOKEN)).status_code == 200


def test_keys_are_created_listed_and_revoked_over_the_admin_api(admin, keys):
    r = admin.post("/v1/admin/keys", headers=auth(TOKEN), json={"tenant": "alpha", "name": "ci"})
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith(created["prefix"]) and created["tenant"] == "alpha" and created["revoked_at"] is None
    assert admin.get("/v1/jobs", headers=auth(key)).status_code == 200

    listed = admin.get("/v1/admin/keys", headers=auth(TOKEN), params={"tenant": "alpha"}).json()
    assert [k["name"] for k in listed] == [None, "ci"] and all("key" not in k for k in listed)
    assert listed[1]["last_used_at"] is not None and {k["tenant"] for k in listed} == {"alpha"}
    assert len(admin.get("/v1/admin/keys", headers=auth(TOKEN)).json()) == 3

    revoked = admin.post(f"/v1/admin/keys/{created['id']}/revoke", headers=auth(TOKEN))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert admin.get("/v1/jobs", headers=auth(key)).status_code == 401  # at once
    assert admin.get("/v1/jobs", headers=auth(keys["alpha"])).status_code == 200  # the tenant's other key
    again = admin.post(f"/v1/admin/keys/{created['prefix']}/revoke", headers=auth(TOKEN))
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]


def test_unknown_tenants_and_keys_are_404(admin):
    r = admin.post("/v1/admin/keys", headers=auth(TOKEN), json={"tenant": "nobody"})
    assert r.status_code == 404 and "no tenant named" in r.json()["detail"]
    assert admin.get("/v1/admin/keys", headers=auth(TOKEN), params={"tenant": "nobody"}).status_code == 404
    assert admin.post("/v1/admin/keys/sg_nothing/revoke", headers=auth(TOKEN)).status_code == 404


def test_a_key_revoked_with_the_cli_is_refused_at_once(client, keys, capsys):
    assert client.get("/v1/jobs", headers=auth(keys["alpha"])).status_code == 200
    assert main(["keys", "revoke", keys["alpha"][:10]]) == 0
    assert "revoked" in capsys.readouterr().out
    assert client.get("/v1/jobs", headers=auth(keys["alpha"])).status_code == 401
    assert client.get("/v1/jobs", headers=auth(keys["beta"])).status_code == 200
