"""What the stack's parts share: ``start()`` and ``stop()``, and ``with`` doing both."""

from __future__ import annotations

from typing import Self


class Startable:
    """A server or a set of processes; ``with`` starts it and stops it even if starting failed."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
