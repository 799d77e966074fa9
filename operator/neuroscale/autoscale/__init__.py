"""Token-throughput autoscaling: the pure policy, its baselines, and the trace simulator that compares them."""
