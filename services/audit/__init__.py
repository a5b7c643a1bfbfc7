"""Audit: a user's whole history across services, rebuilt by replaying the event stores."""
