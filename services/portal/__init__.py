"""The web portal: the guide's screens and the help-desk console, over the bus only.

It keeps no domain state: every fact comes from a service over request/reply. What it holds
is per-browser session state in memory (who signed in, how far they got, short-lived tokens).
"""
