"""Reconcilers: read the cluster, call the pure core, write only the difference. No kopf in here."""
