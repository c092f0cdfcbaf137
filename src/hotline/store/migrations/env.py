"""Alembic environment: runs migrations on the engine that ``hotline.store.db`` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

engine = context.config.attributes["engine"]
if not isinstance(engine, Engine):
    raise TypeError("hotline migrations need an Engine in config.attributes['engine']")

with engine.connect() as connection:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
