"""``rekey serve <service>``: one process of Rekey, without the command line's imports.

Every process ``rekey up`` starts and every container runs this. It imports only the service
it runs (its bootstrap and the runtime), not the ``rekey`` command with its other commands,
rich and typer: a process idles at about 20 MB less and starts in about half the CPU time
(docs/benchmarks.md). ``rekey.cli.main`` sends ``serve`` here before it loads the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path

USAGE = "usage: rekey serve SERVICE [--data-dir FOLDER]"


def nats_without_aiohttp() -> None:
    """Import nats-py's transports while aiohttp cannot be imported, then allow it again.

    nats-py imports aiohttp whenever it is installed, for a WebSocket transport Rekey never
    uses (its bus URLs are nats:// and tls://): about 16 MB of every process, most of which has
    no other use for it. A module that does need aiohttp (verification's webhooks) imports it as
    usual afterwards.
    """
    if "nats" in sys.modules or "aiohttp" in sys.modules:
        return
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # `import aiohttp` raises ImportError
    try:
        import nats.aio.transport  # noqa: F401
    finally:
        del sys.modules["aiohttp"]


def serve(service: str, data_dir: Path | None = None) -> int:
    """Run ``service`` in the foreground; the exit status (2: no such service)."""
    nats_without_aiohttp()
    import asyncio
    import importlib

    from rekey.stack.environment import settings_for
    from shared.files import keep_files_private
    from shared.settings import PROCESSES

    keep_files_private()  # its stores, vault and logs: its owner's alone (as every command)
    if service not in (*PROCESSES, "portal"):
        print(f"Unknown service {service!r}: choose one of {', '.join(PROCESSES)} or portal.",
              file=sys.stderr)
        return 2
    settings = settings_for(data_dir)
    from shared.logs import configure

    configure(service, settings.log_level, settings.log_format)
    if service == "portal":  # the web edge: no store, no endpoints of its own on the bus
        from services.portal.app import serve as serve_portal

        serve_portal(settings)
        return 0
    from shared.duties import setting_up
    from shared.runtime import serve_forever

    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    with setting_up(settings, service):  # replicas starting together take turns on the catalog
        wiring = bootstrap.build(settings)
    asyncio.run(serve_forever(wiring, settings))
    return 0


def parse(argv: list[str]) -> tuple[str, Path | None] | None:
    """``serve SERVICE [--data-dir FOLDER]`` as (service, folder); None for any other command
    line (``--help`` among them), which the full command line answers."""
    if len(argv) < 2 or argv[0] != "serve" or argv[1].startswith("-"):
        return None
    rest = argv[2:]
    if not rest:
        return argv[1], None
    if len(rest) == 2 and rest[0] == "--data-dir":
        return argv[1], Path(rest[1])
    if len(rest) == 1 and rest[0].startswith("--data-dir="):
        return argv[1], Path(rest[0].partition("=")[2])
    return None
