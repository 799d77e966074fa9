"""End-to-end tests against a real cluster (see README.md): skipped unless NEUROSCALE_E2E=1."""
