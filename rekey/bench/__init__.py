"""``rekey bench`` (tooling): benchmarks that print figures (pipeline rates, challenge latency)."""
