"""NATS JetStream plumbing: stream set-up, the outbox relay, durable consumers, request/reply."""
