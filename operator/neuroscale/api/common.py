"""API types shared by every neuroscale resource: conditions, references, environment variables."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from neuroscale.api.schema import ApiModel

GROUP = "neuroscale.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# RFC 1123 label: what Kubernetes accepts for names of Services, Secrets and most objects.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


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
