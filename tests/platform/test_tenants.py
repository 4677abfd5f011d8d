"""Tenants and API keys on a real PostgreSQL, through the CLI users run."""

import pytest
from sqlalchemy import select

from shared.config import get_settings
from shared.db import migrate, session_scope
from shared.models import ApiKey
from shared.tenants import create_api_key, create_tenant, hash_key, tenant_for_key
from shared.tools.cli import main


@pytest.fixture()
def database(empty_database, monkeypatch):
    url = empty_database
    monkeypatch.setenv("SMOOTHGUARD_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_cli_migrates_creates_tenant_and_key_shown_once(database, capsys):
    assert main(["migrate"]) == 0
    assert main(["tenants", "create", "acme"]) == 0
    assert main(["keys", "create", "acme", "--name", "ci"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("sg_") and len(key) > 40
    with session_scope(database) as s:
        row = s.scalar(select(ApiKey))
        assert row.key_hash == hash_key(key) and key not in (row.key_hash, row.prefix)
        assert key.startswith(row.prefix) and row.name == "ci"
        assert tenant_for_key(s, key).name == "acme"
        assert tenant_for_key(s, key + "x") is None


def test_cli_errors_are_clear(database, capsys):
    assert main(["migrate"]) == 0
    assert main(["tenants", "create", "acme"]) == 0
    assert main(["tenants", "create", "acme"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["keys", "create", "nobody-here"]) == 2
    assert "no tenant named" in capsys.readouterr().err


def test_revoked_keys_do_not_authenticate(database):
    migrate(database)
    with session_scope(database) as s:
        row, key = create_api_key(s, tenant=create_tenant(s, name="t"))
        row.revoked = True
    with session_scope(database) as s:
        assert tenant_for_key(s, key) is None
