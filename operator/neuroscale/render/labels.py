"""Labels and annotations that let the operator, Prometheus and people find a ModelDeployment's objects."""

from __future__ import annotations

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
MODEL_DEPLOYMENT = "neuroscale.io/model-deployment"
ENGINE = "neuroscale.io/engine"

APP_NAME = "neuroscale"
MODEL_SERVER = "model-server"
MANAGER = "neuroscale"

# Annotations on the pod template: what scrapers and later features read.
SCRAPE = "prometheus.io/scrape"
SCRAPE_PORT = "prometheus.io/port"
SCRAPE_PATH = "prometheus.io/path"
SERVED_MODEL = "neuroscale.io/served-model-name"
COMPILE_CACHE = "neuroscale.io/compile-cache"
# The compiled-artifact key a pod was rendered for: cold starts are measured per key.
ARTIFACT_KEY = "neuroscale.io/artifact-key"
ROLE_ARN = "eks.amazonaws.com/role-arn"

# Kubernetes object names: a Service name is an RFC 1035 label of at most 63 characters.
MAX_NAME_LENGTH = 63


def selector_labels(name: str) -> dict[str, str]:
    """The pod selector: only labels that never change for the life of the CR (selectors are immutable).

    The engine is deliberately left out: switching engines rolls the pods but must not orphan them.
    """
    return {INSTANCE: name, MODEL_DEPLOYMENT: name}


def common_labels(name: str, engine: str) -> dict[str, str]:
    """Labels on every child object and on the pods."""
    return {
        NAME: APP_NAME,
        INSTANCE: name,
        COMPONENT: MODEL_SERVER,
        MANAGED_BY: MANAGER,
        MODEL_DEPLOYMENT: name,
        ENGINE: engine,
    }


def component_labels(name: str, component: str, owner_label: str) -> dict[str, str]:
    """Labels on every child of a cascade or cache tier: the standard set plus the label naming its owner."""
    return {NAME: APP_NAME, INSTANCE: name, COMPONENT: component, MANAGED_BY: MANAGER, owner_label: name}


def component_selector(name: str, component: str, owner_label: str) -> dict[str, str]:
    """The stable subset of `component_labels` that selects the pods (selectors are immutable)."""
    return {INSTANCE: name, owner_label: name, COMPONENT: component}


def selector_string(selector: dict[str, str]) -> str:
    """The selector in `kubectl -l` form, as the scale subresource reports it in status.selector."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
