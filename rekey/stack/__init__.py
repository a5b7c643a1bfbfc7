"""The local stack (tooling): nats-server, the mail sink, the Twilio sim and the services as
processes, and the environment they share (``rekey up``, ``rekey demo --embedded``, tests)."""
