"""Alembic environment of the history database.

:meth:`inspector.history.HistoryDB.upgrade` passes its own connection in
``config.attributes["connection"]`` (so SQLite gets the same pragmas as the application). The
``alembic`` command line works with the ``alembic.ini`` beside this file and
``-x url=<database URL>``; see that file for how to write a new revision.
"""

from alembic import context
from sqlalchemy import create_engine

from inspector.history.tables import Base, UTCDateTime

config = context.config


def _render_item(type_, obj, autogen_context):
    """Write the UTC column type as its plain SQL type, so revisions never import the models."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure_and_run(connection):
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("give the database as: alembic -x url=sqlite:///path/to/history.db ...")
    engine = create_engine(url)
    with engine.connect() as connection:
        _configure_and_run(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
