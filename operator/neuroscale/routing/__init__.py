"""Which replica of a tier serves a request: prefix- and session-aware consistent hashing with bounded loads."""
