"""The services inside one process, for tests and benchmarks: one runtime and one store each.

Exactly as in production (the same ``bootstrap.build`` and ``ServiceRuntime``) but on the
caller's event loop, so a test can stop, "kill" and restart one service while the others keep
going. Also the two scratch resources such a run needs: settings with fresh keys under a
folder, and a PostgreSQL database of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rekey.stack.natsd import EmbeddedNats
from shared.clock import Clock
from shared.duties import setting_up
from shared.runtime import ServiceRuntime
from shared.settings import Settings, new_key

KILL_WAIT_SECONDS = 5.0
POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def scratch_settings(
    folder: Path,
    nats: EmbeddedNats | str,
    store: str = "sqlite",
    postgres_db: str | None = None,
    smtp_port: int | None = None,
    **overrides: Any,
) -> Settings:
    """Settings for a throw-away run: data under ``folder``, fresh keys, mail to ``smtp_port``;
    ``nats`` is an :class:`EmbeddedNats` (its URL, bus keys and CA) or a bare URL."""
    bus = nats.client_settings() if isinstance(nats, EmbeddedNats) else {"nats_url": nats}
    values: dict[str, Any] = {
        **bus,
        "data_dir": folder,
        "store": store,
        "vault_key": new_key(),
        "token_key": new_key(),
        "cipher_key": new_key(),
    }
    if store == "postgres":
        if postgres_db is None:
            raise ValueError('store="postgres" needs postgres_db (see create_database)')
        values["postgres_db"] = postgres_db
    if smtp_port is not None:  # a local mail sink: loopback, no TLS
        values["smtp_host"] = "127.0.0.1"
        values["smtp_port"] = smtp_port
        values["smtp_tls"] = "none"
    values.update(overrides)
    return Settings(**values)


def create_database(prefix: str = "rekey_test") -> str:
    """A new, empty database ``<prefix>_<hex>`` on the local server; its name.

    Raises ``psycopg.OperationalError`` when the server is not answering.
    """
    name = f"{prefix}_{secrets.token_hex(6)}"
    _admin("CREATE DATABASE {}", name)
    return name


def copy_database(template: str, into: str) -> None:
    """``into`` made anew as a copy of ``template``; no one may be connected to either."""
    drop_database(into)
    _admin("CREATE DATABASE {} TEMPLATE {}", into, template)


def drop_database(name: str) -> None:
    # FORCE ends connections a failed run may have left open (PostgreSQL 13+).
    _admin("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


def empty_database(name: str) -> bool:
    """Make ``name`` as empty as a new database, in a fraction of what dropping and creating
    one costs the server: its other connections ended, every schema dropped and ``public``
    made again as PostgreSQL makes it. False when a connection came back meanwhile (a
    process still running): the database is then not safe to reuse."""
    import psycopg
    from psycopg import sql

    info = POSTGRES_ADMIN.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(info, autocommit=True) as conn:
        others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        conn.execute(f"SELECT pg_terminate_backend(pid) {others}")
        for _ in range(250):  # a terminated backend leaves a moment later
            if conn.execute(f"SELECT count(*) {others}").fetchone() == (0,):
                break
            time.sleep(0.02)
        schemas = [row[0] for row in conn.execute(
            "SELECT nspname FROM pg_namespace"
            " WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'")]
        if schemas:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(schema) for schema in schemas)))
        conn.execute("CREATE SCHEMA public AUTHORIZATION pg_database_owner")
        conn.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
        return conn.execute(f"SELECT count(*) {others}").fetchone() == (0,)


@contextlib.contextmanager
def scratch_database(prefix: str = "rekey_test") -> Iterator[str]:
    """A database of its own for the ``with`` block, dropped afterwards."""
    name = create_database(prefix)
    try:
        yield name
    finally:
        drop_database(name)


def _admin(statement: str, *databases: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL(statement).format(  # type: ignore[arg-type]
            *(sql.Identifier(database) for database in databases)))


def _build(bootstrap: Any, name: str, settings: Settings, extra: dict[str, Any]) -> Any:
    with setting_up(settings, name):  # replicas starting together take turns on the catalog
        return bootstrap.build(settings, **extra)


class InProcessServices:
    """Start, stop and kill services by name; ``app(name)`` is a running service's application."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtimes: dict[str, ServiceRuntime] = {}
        self.killed: list[ServiceRuntime] = []

    async def start(
        self, name: str, *, clock: Clock | None = None, replica: str = "", **options: Any
    ) -> ServiceRuntime:
        """``options`` go to :class:`ServiceRuntime` (e.g. its test seams); ``clock``, when
        given, to the service's ``build`` (a test's ManualClock instead of sleeping).
        ``replica``: another process of the service on the same store, known as
        ``name#replica`` (``app("credentials#2")``)."""
        bootstrap = importlib.import_module(f"services.{name}.bootstrap")
        extra = {"clock": clock} if clock is not None else {}
        wiring = await asyncio.to_thread(_build, bootstrap, name, self.settings, extra)
        runtime = ServiceRuntime(wiring, self.settings, **options)
        await runtime.start()
        self.runtimes[f"{name}#{replica}" if replica else name] = runtime
        return runtime

    async def stop(self, name: str) -> None:
        await self.runtimes.pop(name).stop()

    async def stop_all(self) -> None:
        """All at once: each stop mostly waits (for its loops and its bus drain)."""
        names = list(self.runtimes)
        results = await asyncio.gather(*(self.stop(n) for n in names), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def kill(self, name: str) -> None:
        """Like SIGKILL: no drain, no ack, no position saved; only the store stays.

        The dead runtime's application is left open, as a killed process would leave its
        files: closing it under a worker thread's running query is what a kill cannot do.
        """
        runtime = self.runtimes.pop(name)
        loops = [*runtime.tasks, *runtime.duty_tasks, *runtime.in_flight.tasks]
        for task in loops:
            task.cancel()
        if loops:  # a task that swallows its cancellation (a library's wait_for racing it on
            # Python 3.11) is left behind, as a killed process's would be: never waited on forever
            done, _ = await asyncio.wait(loops, timeout=KILL_WAIT_SECONDS)
            for task in done:  # what they ended with is a dead process's business
                _ = task.cancelled() or task.exception()
        await runtime.nc.close()
        runtime.duties.close()  # a dead process's locks go with it
        self.killed.append(runtime)

    def app(self, name: str) -> Any:
        return self.runtimes[name].wiring.app
