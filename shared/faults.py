"""Faults of the infrastructure that retrying may cure, told apart from the input or model errors
that end a job: the database, Redis or the object store unreachable, dropping the connection, or
answering with a server error (the broker's own errors, kombu's, are added by the task wrapper:
only ``workers/celery_app.py`` imports Celery and kombu). Steps re-raise these (``raise_if_transient``) and
the task wrapper retries them with backoff (``workers.celery_app.task``); anything else fails the
job, audit or run with its reason."""

from __future__ import annotations

from minio.error import S3Error, ServerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DisconnectionError, InterfaceError
from sqlalchemy.exc import OperationalError as DatabaseError
from urllib3.exceptions import HTTPError as ObjectStoreConnectionError


class QueueUnavailable(ConnectionError):
    """The broker could not take a message (raised by the sender in place of kombu's error)."""


# S3 error codes that mean "the server, not the request": try again
S3_TRANSIENT_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseError,  # connection refused or dropped, server shutting down, serialization failure
    InterfaceError,
    DisconnectionError,
    RedisConnectionError,
    RedisTimeoutError,
    ObjectStoreConnectionError,  # urllib3: connection refused/reset, max retries exceeded
    ServerError,  # the object store's 5xx without an S3 error body
    S3Error,  # narrowed by is_transient to the server-side codes
    ConnectionError,
    TimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, S3Error):
        return exc.code in S3_TRANSIENT_CODES
    return isinstance(exc, TRANSIENT_ERRORS)


def raise_if_transient(exc: BaseException) -> None:
    """Let an infrastructure fault reach the task wrapper, which retries the step."""
    if is_transient(exc):
        raise exc
