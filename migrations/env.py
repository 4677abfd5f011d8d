"""Alembic environment: the URL comes from the caller, ``-x url=...`` or the one Settings class."""

from alembic import context
from sqlalchemy import create_engine

from shared.config import get_settings
from shared.db import sqlalchemy_url
from shared.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    url = (
        context.config.attributes.get("url")  # shared.db.migrate
        or context.get_x_argument(as_dictionary=True).get("url")  # alembic -x url=...
        or get_settings().database_url
    )
    if context.is_offline_mode():
        context.configure(url=sqlalchemy_url(url), target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(sqlalchemy_url(url))
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
