"""Engine, sessions and migrations. The schema is created only by Alembic (``migrate``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Protocol, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parent.parent


def sqlalchemy_url(url: str) -> str:
    """``postgresql://`` → the psycopg 3 driver."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


@lru_cache(maxsize=4)
def get_engine(url: str) -> Engine:
    return create_engine(sqlalchemy_url(url), pool_pre_ping=True)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    with sessionmaker(get_engine(url), expire_on_commit=False)() as session, session.begin():
        yield session


class Finishable(Protocol):
    """A row that ends once (a job, an audit)."""

    @property
    def finished_at(self) -> datetime | None: ...


F = TypeVar("F", bound=Finishable)


@contextmanager
def locked_unfinished(url: str, model: type[F], row_id: str | uuid.UUID) -> Iterator[tuple[Session, F | None]]:
    """A transaction holding the row's lock, so that steps of one job (or audit) never interleave;
    the row is None when it is gone or already finished (a redelivered or late message then has
    nothing to do). Commits on exit, rolls back on error."""
    with session_scope(url) as session:
        row = session.get(model, uuid.UUID(str(row_id)), with_for_update=True)
        yield session, row if row is not None and row.finished_at is None else None


def migrate(url: str, revision: str = "head") -> None:
    """``alembic upgrade`` to ``revision`` (``downgrade`` when it starts with ``-`` or is ``base``)."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["url"] = url
    if revision == "base" or revision.startswith("-"):
        command.downgrade(config, revision)
    else:
        command.upgrade(config, revision)
