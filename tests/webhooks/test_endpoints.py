"""Registering a webhook endpoint: concurrent registrations of one URL give one endpoint and
``Conflict`` for the others (16 of 60 raced to a 500 before), against the real database."""

import threading

from sqlalchemy import func, select

from shared.config import Settings
from shared.db import session_scope
from shared.errors import Conflict
from shared.models import WebhookEndpoint
from shared.tenants import create_tenant
from shared.webhooks.endpoints import register_endpoint


def test_concurrent_registrations_of_one_url_give_one_endpoint_and_conflicts(database):
    settings = Settings(database_url=database, webhook_allowlist="127.0.0.1")
    with session_scope(database) as s:
        tenant_id = create_tenant(s, name="racer").id
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def register() -> None:
        start.wait()
        try:
            with session_scope(database) as s:
                register_endpoint(s, settings, tenant_id, "http://127.0.0.1:9/hook")
            outcomes.append("created")
        except Conflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["conflict"] * 7 + ["created"]
    with session_scope(database) as s:
        assert s.scalar(select(func.count(WebhookEndpoint.id))) == 1
