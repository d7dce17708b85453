"""Alembic environment: migrations run on DIRECT_URL (never through a pooler).

A caller may hand over an open connection in ``config.attributes["connection"]``
(the tests migrate their own database that way); otherwise the URL comes from
``config.attributes["url"]`` or the project's settings (``queries.db.configured_urls``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from queries.db import configured_urls, create_direct_engine
from queries.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url") or configured_urls().direct
    engine = create_direct_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.attributes.get("url") or configured_urls().direct,
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
