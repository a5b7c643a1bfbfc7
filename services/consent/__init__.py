"""Consent: the Data Access Agreement's versions and each user's acceptance."""
