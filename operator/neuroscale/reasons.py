"""Condition types and reasons, in one place, so users and programs can match on them."""

# Condition types.
SIZED = "Sized"
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
AUTOSCALING = "Autoscaling"
RESOLVED = "Resolved"

# Sized.
SIZING_CHOSEN = "SizingChosen"
SIZING_FAILED = "SizingFailed"
INVALID_SPEC = "InvalidSpec"

# Progressing / Ready.
ROLLING_OUT = "RollingOut"
WAITING_FOR_PODS = "WaitingForPods"
AVAILABLE = "Available"
SCALED_TO_ZERO = "ScaledToZero"
RECONCILED = "Reconciled"

# Degraded.
APPLY_FAILED = "ApplyFailed"
REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
ROLLOUT_STALLED = "RolloutStalled"
HEALTHY = "Healthy"

# Autoscaling.
SCALING_ACTIVE = "ScalingActive"
SCALING_DISABLED = "ScalingDisabled"
METRICS_UNAVAILABLE = "MetricsUnavailable"
