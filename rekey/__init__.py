"""Rekey's operator tooling, one package per room (the product is ``services/`` and ``shared/``):

- ``rekey.cli``: the ``rekey`` command;
- ``rekey.stack``: the local stack, with its stand-ins nats-server, mail sink and Twilio sim;
- ``rekey.authenticator``: the reference authenticator app;
- ``rekey.demo``: the user guide walked step by step;
- ``rekey.bench``: benchmarks;
- ``rekey.terminal``: how commands print, shared by the CLI and the demo.
"""
