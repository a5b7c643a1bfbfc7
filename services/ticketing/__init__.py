"""Ticketing: MFA reset requests, the agent's identity check, approval or rejection, closure."""
