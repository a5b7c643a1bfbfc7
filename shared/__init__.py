"""Rekey's shared package: public event contracts, settings and the bus machinery every service uses."""
