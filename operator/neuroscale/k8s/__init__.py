"""The operator's Kubernetes API adapter: resource paths, a JSON client, server-side apply and ownership."""
