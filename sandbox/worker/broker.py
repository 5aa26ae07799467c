"""The embedded broker: Kombu's SQLAlchemy transport on a SQLite file, made responsive.

Kombu hands every transport option to ``create_engine``, so its polling
interval cannot be set through them; this transport polls every 50 ms and
opens SQLite with a busy timeout and WAL, so the portal and the worker can
share the file.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import create_engine, event

EMBEDDED_PREFIX = "sqla+sqlite:"
TRANSPORT = "sandbox.worker.broker:Transport"


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self) -> object:
        engine = create_engine(
            self.connection.client.hostname, connect_args={"timeout": 30}, pool_pre_ping=True
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel
    polling_interval = 0.05


def celery_broker_settings(url: str) -> dict[str, Any]:
    """Route the embedded SQLite broker through this transport; leave others alone.

    Kombu takes an import path only through the explicit transport setting,
    never from the URL.
    """
    if url.startswith(EMBEDDED_PREFIX):
        return {
            "broker_url": "sqlite:" + url.removeprefix(EMBEDDED_PREFIX),
            "broker_transport": TRANSPORT,
        }
    return {"broker_url": url, "broker_transport_options": {"visibility_timeout": 3600}}
