"""How the gateway routes one tier's requests over its replicas (a field of the tier's gateway config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from neuroscale.routing.balancer import DEFAULT_LOAD_FACTOR

# The gateway's own routing policies; `service` (the fourth a cascade may choose) is no routing at all: the tier's
# Service URL and kube-proxy, so it never reaches a gateway config.
GatewayPolicy = Literal["prefix", "session", "least-loaded"]
DEFAULT_SESSION_HEADER = "x-neuroscale-session"
# One 512-token block of text at ~4 characters a token: a system prompt and the opening of the conversation.
DEFAULT_PREFIX_CHARS = 2048


class ReplicaRouting(BaseModel):
    """Route to the replicas behind a Service (read from its EndpointSlices) instead of through the Service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: GatewayPolicy = Field(
        default="prefix",
        description="prefix: hash the session header when sent, else the prompt's opening; session: hash the session "
        "header, least-loaded without one; least-loaded: no affinity.",
    )
    service: str = Field(min_length=1, max_length=63, description="Service whose EndpointSlices list the replicas.")
    namespace: str = Field(min_length=1, max_length=63, description="Namespace of the Service.")
    port_name: str = Field(default="http", min_length=1, max_length=15, description="EndpointSlice port to send to.")
    path: str = Field(default="/v1", pattern=r"^/", description="API prefix on each replica.")
    load_factor: float = Field(
        default=DEFAULT_LOAD_FACTOR, gt=1.0, le=10.0,
        description="Bounded load for a request of average length: no replica takes it past factor × the mean in "
        "flight; a longer prompt gets up to twice the slack, a shorter one less.",
    )
    session_header: str = Field(default=DEFAULT_SESSION_HEADER, min_length=1, max_length=128)
    prefix_chars: int = Field(default=DEFAULT_PREFIX_CHARS, ge=64, le=1 << 20,
                              description="Characters of the prompt's opening the prefix key covers.")
    static_replicas: tuple[str, ...] | None = Field(
        default=None,
        description="host:port of each replica, instead of watching EndpointSlices (replicas outside Kubernetes).",
    )
