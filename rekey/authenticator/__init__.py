"""The reference authenticator app (tooling): the "phone" of the demo, the benchmarks and tests."""
