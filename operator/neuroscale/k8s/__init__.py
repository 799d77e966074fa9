"""The operator's Kubernetes API adapter: resource paths, a JSON client, and apply-by-difference."""
