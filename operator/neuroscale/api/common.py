"""API types shared by every neuroscale resource: conditions, references, environment variables."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from neuroscale.api.schema import ApiModel

GROUP = "neuroscale.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# RFC 1123 label: what Kubernetes accepts for names of Services, Secrets and most objects.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Every URL field of every kind shares one authority: a host name or IP literal and an optional port in 1..65535,
# and never userinfo (`user:password@`). URLs are copied into status, the gateway ConfigMap, Events and logs;
# credentials travel in Secret references instead. The host's characters leave out `@` and `:`, so no userinfo
# can match (the way the Redis URL always refused it).
URL_HOST = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)"
URL_PORT = r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"


def url_pattern(scheme: str, rest: str) -> str:
    """`^scheme://host[:port]rest$` with the shared authority (no userinfo, port 1..65535)."""
    return f"^{scheme}://{URL_HOST}{URL_PORT}{rest}$"


HTTP_URL = url_pattern("https?", r"([/?#][^\s]*)?")
REDIS_URL = url_pattern("rediss?", r"(/[0-9]{1,2})?")
_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#\s]*)")


def _check_authority(value: Any) -> Any:
    """Say plainly what is wrong with a URL's authority (the pattern refuses the same, with its regex as the
    message). The value is never echoed: it may hold a password, and messages end up in status."""
    if not isinstance(value, str) or (found := _AUTHORITY.match(value)) is None:
        return value
    authority = found.group(1)
    if "@" in authority:
        raise PydanticCustomError(
            "url_credentials",
            "a URL must not carry credentials (user:password@); reference a Secret for them instead",
        )
    port = re.search(r":([0-9]+)$", authority)
    if port and not 1 <= int(port.group(1)) <= 65535:
        raise PydanticCustomError("url_port", "the URL's port must be between 1 and 65535")
    return value


# Annotated string types for URL fields: the pattern goes into the CRD, the check into the model.
# (The check comes after the pattern so that it wraps it: the JSON schema then keeps the pattern.)
HttpUrl = Annotated[str, Field(pattern=HTTP_URL), BeforeValidator(_check_authority)]
RedisUrl = Annotated[str, Field(pattern=REDIS_URL), BeforeValidator(_check_authority)]


def default_object(model: type[BaseModel], description: str) -> dict[str, Any]:
    """Field arguments for an optional object that defaults to its own defaults, in pydantic and in the CRD.

    The CRD default is the model's defaults written out, not `{}`: the API server checks a default against the
    object's CEL rules as it stands (nested defaults not applied), so `{}` fails a rule that reads a defaulted field.
    """
    defaults = {k: v for k, v in model().model_dump(mode="json", by_alias=True, exclude_none=True).items()
                if v != []}  # an empty list says nothing the schema does not
    return {"default_factory": model, "description": description, "json_schema_extra": {"default": defaults}}


class Condition(ApiModel):
    """One observation of the resource's state, in the standard Kubernetes condition shape."""

    type: str = Field(description="Condition type, e.g. Ready, Sized, Progressing, Degraded.", max_length=64)
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason a program can match on.", max_length=128)
    message: str = Field(default="", description="Human-readable explanation.", max_length=4096)
    last_transition_time: str = Field(
        description="When the status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation of the spec this condition was computed from."
    )


CONDITIONS_FIELD = Field(
    default_factory=list,
    description="Current state as standard conditions; Ready summarises the others.",
    max_length=16,
    json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
)


class SecretKeyRef(ApiModel):
    """A key in a Secret in the resource's namespace. Values are mounted, never copied into objects."""

    name: str = Field(description="Secret name.", max_length=253, pattern=DNS_LABEL.replace("[-a-z0-9]", "[-.a-z0-9]"))
    key: str = Field(default="token", description="Key within the Secret.", max_length=253)


class EnvVar(ApiModel):
    """A literal environment variable for the serving container (use secret references for credentials)."""

    name: str = Field(description="Variable name.", max_length=128, pattern=ENV_NAME)
    value: str = Field(default="", description="Literal value.", max_length=4096)


class Toleration(ApiModel):
    """An extra toleration for the model pods (the Neuron taint is always tolerated)."""

    key: str | None = Field(default=None, description="Taint key; empty with operator Exists matches all.", max_length=253)
    operator: Literal["Exists", "Equal"] = Field(default="Equal", description="Exists or Equal.")
    value: str | None = Field(default=None, description="Taint value for operator Equal.", max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to tolerate; empty matches all effects."
    )
