"""``python -m rekey`` is the ``rekey`` command."""

from rekey.cli import main

main()
