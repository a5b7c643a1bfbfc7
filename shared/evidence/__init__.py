"""Evidence over each service's own store: the RFC 9162 Merkle tree of its stored rows, the
signed tree heads every service's runtime publishes, and reading the rows they cover. Shared,
since every service signs its own heads; the audit service and ``rekey audit verify`` check
them."""
