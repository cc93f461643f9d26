"""Alembic environment: migrations run on the connection the archive hands over."""

from alembic import context
from sqlalchemy import create_engine

from musewise.archive.schema import Base

target_metadata = Base.metadata
config = context.config


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"))
        with engine.begin() as connection:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    context.run_migrations()


run_migrations_online()
