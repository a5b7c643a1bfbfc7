"""Rekey's operator tooling: CLI, local stack, embedded NATS server and mail sink."""
