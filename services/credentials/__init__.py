"""Credentials: portal accounts, passwords, temporary passwords by secure email, sign-in."""
