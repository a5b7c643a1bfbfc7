"""The ``rekey`` command: ``app`` holds the commands, the other modules what some of them need.

``rekey serve <service>`` (every service process) skips the command line's imports: see
``rekey.serve``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main() -> None:
    from rekey.serve import parse, serve

    wanted = parse(sys.argv[1:])
    if wanted is None:
        from rekey.serve import nats_without_aiohttp

        nats_without_aiohttp()  # as in a service: about a fifth of a command's start-up
        from rekey.cli.app import main as full

        full()
        return
    try:
        code = serve(*wanted)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # as the full command line says it, without rich
        if os.environ.get("REKEY_DEBUG"):
            raise
        print(f"rekey: {type(exc).__name__}: {exc} (REKEY_DEBUG=1 shows the details)", file=sys.stderr)
        sys.exit(1)
    sys.exit(code)
