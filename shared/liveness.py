"""Which workers are alive: each worker process writes ``seen_at`` every ``worker_heartbeat_s``;
a step that runs long (a round, an attack, training) records the worker that claimed it. Work
claimed by a worker silent for ``worker_timeout_s`` is re-sent by the sweeper at once — a killed
worker's work comes back within ``worker_timeout_s + sweep_interval_s``, not after the broker's
visibility timeout — and a duplicate message for work a live worker holds is dropped. Each beat
also refreshes the worker's readiness file (``shared.readiness``, what ``smoothguard healthcheck``
reads); a worker that stops removes both its row and that file."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.db import session_scope
from shared.models import Worker
from shared.readiness import mark_ready, unmark_ready

log = logging.getLogger(__name__)


@cache
def _identity(pid: int) -> str:
    return f"{socket.gethostname()[:80]}:{pid}:{secrets.token_hex(4)}"


def worker_id() -> str:
    """This process's name in claims: host, pid and a nonce (a restarted worker is a new one)."""
    return _identity(os.getpid())


def heartbeat(settings: Settings, queues: str) -> None:
    """Write that this worker is alive now."""
    now = datetime.now(UTC)
    with session_scope(settings.database_url) as session:
        stmt = insert(Worker).values(id=worker_id(), queues=queues[:200], seen_at=now)
        session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_={"seen_at": now}))


def keep_alive(settings: Settings, queues: str, stop: threading.Event) -> threading.Thread:
    """The first heartbeat now (before the worker takes a task), then a thread that beats until
    ``stop`` is set and removes the row. A failed heartbeat (the database is down) is logged and
    tried again next time."""
    beat_once(settings, queues)
    thread = threading.Thread(target=_beat_until, args=(settings, queues, stop), daemon=True, name="heartbeat")
    thread.start()
    return thread


def beat_once(settings: Settings, queues: str) -> None:
    try:
        mark_ready(settings, queues)
        heartbeat(settings, queues)
    except Exception:
        log.warning("heartbeat failed", exc_info=True)


def _beat_until(settings: Settings, queues: str, stop: threading.Event) -> None:
    while not stop.wait(settings.worker_heartbeat_s):
        beat_once(settings, queues)
    forget(settings)


def forget(settings: Settings) -> None:
    """This worker is gone: its row (its claims are the dead's from now on) and its readiness file."""
    unmark_ready(settings)
    try:
        with session_scope(settings.database_url) as session:
            session.execute(delete(Worker).where(Worker.id == worker_id()))
    except Exception:
        log.warning("could not remove this worker's row", exc_info=True)


def live_workers(session: Session, settings: Settings) -> set[str]:
    since = datetime.now(UTC) - timedelta(seconds=settings.worker_timeout_s)
    return set(session.scalars(select(Worker.id).where(Worker.seen_at >= since)))


def held_elsewhere(session: Session, settings: Settings, claimed_by: str | None) -> bool:
    """True when another live worker holds the claim (this message is a duplicate: drop it)."""
    return claimed_by is not None and claimed_by != worker_id() and claimed_by in live_workers(session, settings)


def claimed_by_the_dead(column: Any, live: set[str]) -> ColumnElement[bool]:
    """SQL: the row's claim is held by a worker that is no longer alive."""
    return and_(column.is_not(None), column.not_in(live)) if live else column.is_not(None)
