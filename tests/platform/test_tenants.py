"""Tenants and API keys on a real PostgreSQL, through the CLI users run."""

import pytest
from sqlalchemy import select

from shared.config import get_settings
from shared.db import migrate, session_scope
from shared.models import ApiKey
from shared.tenants import active_key, create_api_key, create_tenant, hash_key
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
        assert active_key(s, key).id == row.id and active_key(s, key).last_used_at is not None
        assert active_key(s, key + "x") is None


def test_cli_errors_are_clear(database, capsys):
    assert main(["migrate"]) == 0
    assert main(["tenants", "create", "acme"]) == 0
    assert main(["tenants", "create", "acme"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["keys", "create", "nobody-here"]) == 2
    assert "no tenant named" in capsys.readouterr().err


def test_cli_lists_and_revokes_keys(database, capsys):
    migrate(database)
    with session_scope(database) as s:  # one transaction each: keys are listed by creation time
        first, first_key = create_api_key(s, tenant=create_tenant(s, name="acme"), name="ci")
    with session_scope(database) as s:
        other, other_key = create_api_key(s, tenant=create_tenant(s, name="globex"))
    assert main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["id", "prefix", "name", "tenant", "created", "revoked", "last", "used"]
    assert [line.split()[1:4] for line in lines[2:]] == [[first.prefix, "ci", "acme"], [other.prefix, "-", "globex"]]
    assert main(["keys", "revoke", first.prefix]) == 0 and first.prefix in capsys.readouterr().out
    assert main(["keys", "list", "--tenant", "acme"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()[2:]
    assert line.split()[1] == first.prefix and line.split()[6] != "-"  # the revoked column has a time
    assert main(["keys", "revoke", str(other.id)]) == 0
    with session_scope(database) as s:
        assert active_key(s, first_key) is None and active_key(s, other_key) is None
    assert main(["keys", "revoke", "sg_nothing"]) == 2 and "no API key" in capsys.readouterr().err
    assert main(["keys", "list", "--tenant", "nobody"]) == 2 and "no tenant named" in capsys.readouterr().err
