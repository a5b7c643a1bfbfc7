"""``rekey demo`` (tooling): the user guide walked against a running Rekey, step by step."""
