"""Condition types and reasons, in one place, so users and programs can match on them."""

# Condition types.
SIZED = "Sized"
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
AUTOSCALING = "Autoscaling"
RESOLVED = "Resolved"
COMPILE_CACHE = "CompileCache"

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

# CompileCache: True when S3 could be checked (the reason says what it holds), False when it could not.
ARTIFACTS_FOUND = "ArtifactsFound"
ARTIFACTS_MISSING = "ArtifactsMissing"
S3_ACCESS_DENIED = "S3AccessDenied"
S3_BUCKET_MISSING = "S3BucketMissing"
S3_NO_CREDENTIALS = "S3NoCredentials"
S3_UNAVAILABLE = "S3Unavailable"
