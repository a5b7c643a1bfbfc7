"""Verification: MFA methods and challenges (authenticator app; phone in a later step)."""
