"""Rekey's services: each is its own process with its own event store."""
