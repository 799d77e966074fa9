"""`plan`: what the operator would create for a set of manifests, computed offline (the GitOps preview)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from neuroscale.api.common import GROUP
from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.api.registry import KINDS
from neuroscale.render.cachetier import render_cache_tier_doc
from neuroscale.render.inferencecascade import render_inference_cascade_doc
from neuroscale.render.modeldeployment import render_model_deployment
from neuroscale.sizing.sizer import SizingError


@dataclass(frozen=True)
class PlanEntry:
    """The outcome for one input document: objects, or a note why it was passed over, or an error."""

    index: int
    kind: str | None
    name: str | None
    namespace: str | None
    objects: list[dict] = field(default_factory=list)
    summary: str | None = None
    note: str | None = None
    error: str | None = None

    @property
    def label(self) -> str:
        """How messages refer to the document: `ModelDeployment models/llama`, or its position."""
        if self.kind and self.name:
            where = f"{self.namespace}/{self.name}" if self.namespace else self.name
            return f"{self.kind} {where}"
        return f"document {self.index + 1}"


@dataclass(frozen=True)
class PlanResult:
    """Every input document's entry, in input order."""

    entries: list[PlanEntry]

    @property
    def objects(self) -> list[dict]:
        return [obj for entry in self.entries for obj in entry.objects]

    @property
    def errors(self) -> list[str]:
        return [f"{entry.label}: {entry.error}" for entry in self.entries if entry.error]

    @property
    def notes(self) -> list[str]:
        return [f"{entry.label}: {entry.note}" for entry in self.entries if entry.note]

    @property
    def summaries(self) -> list[str]:
        return [f"{entry.label}: {entry.summary}" for entry in self.entries if entry.summary]

    @property
    def ok(self) -> bool:
        return not self.errors


# A renderer takes the document, its name and namespace, and every input document (a cascade resolves the
# ModelDeployments and CacheTier it names among them), and returns (objects, one-line summary).
Renderer = Callable[[dict[str, Any], str, str, Sequence[Any]], tuple[list[dict], str]]


def validation_message(err: ValidationError) -> str:
    """Pydantic's errors as `field.path: problem` lines, without its URLs and input dumps."""
    lines = []
    for problem in err.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "spec"
        lines.append(f"spec.{where}: {problem['msg']}")
    return "; ".join(lines)


def initial_replicas(spec: ModelDeploymentSpec) -> int:
    """Replicas on first creation: the autoscaler starts from its minimum, otherwise spec.replicas."""
    scaling = spec.autoscaling
    if scaling is not None and scaling.enabled:
        return scaling.min_replicas
    return spec.replicas


def render_model_deployment_doc(doc: dict[str, Any], name: str, namespace: str,
                                _documents: Sequence[Any] = ()) -> tuple[list[dict], str]:
    spec = ModelDeploymentSpec.model_validate(doc.get("spec") or {})
    replicas = initial_replicas(spec)
    rendered = render_model_deployment(name, namespace, spec, replicas)
    sizing = rendered.sizing
    price = f"${sizing.price_per_hour:.2f}/h per replica" if sizing.price_per_hour is not None else "price unknown"
    summary = (
        f"{spec.engine.name} on {sizing.instance.name}, TP {sizing.tensor_parallel} "
        f"({sizing.placement.resource}: {sizing.placement.count}), {replicas} "
        f"replica{'s' if replicas != 1 else ''}, ~{sizing.tokens_per_second:.0f} tokens/s each, {price}; "
        f"serves {rendered.served_model_name!r} at {rendered.endpoint}"
    )
    return rendered.objects, summary


# neuroscale kinds `plan` can render. Kinds of the neuroscale group missing here are passed over with a note.
RENDERERS: dict[str, Renderer] = {
    "ModelDeployment": render_model_deployment_doc,
    "InferenceCascade": render_inference_cascade_doc,
    "CacheTier": render_cache_tier_doc,
}


def _expand(docs: Iterable[Any]) -> Iterator[Any]:
    """Documents, with `kind: List` wrappers (as `kubectl get -o yaml` writes) opened into their items."""
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            yield from doc["items"]
        else:
            yield doc


def plan_document(index: int, doc: Any, default_namespace: str, documents: Sequence[Any] = ()) -> PlanEntry:
    """One document's entry; never raises."""
    if not isinstance(doc, dict):
        return PlanEntry(index, None, None, None,
                         error=f"expected a Kubernetes object (a mapping), got {type(doc).__name__}")
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name")
    namespace = meta.get("namespace") or default_namespace
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return PlanEntry(index, None, name, namespace, error="missing apiVersion or kind")
    if api_version.split("/", 1)[0] != GROUP:
        return PlanEntry(index, kind, name, meta.get("namespace"),
                         note=f"not a neuroscale resource ({api_version}); passed over")
    known = {k.kind: k for k in KINDS}
    if kind not in known:
        return PlanEntry(index, kind, name, namespace,
                         error=f"unknown neuroscale kind {kind!r}; known kinds: {', '.join(known)}")
    if not isinstance(name, str) or not name:
        return PlanEntry(index, kind, None, namespace, error="metadata.name is missing")
    renderer = RENDERERS.get(kind)
    if renderer is None:
        # Still worth checking: a spec the API server would reject fails the preview, not the sync.
        try:
            known[kind].spec.model_validate(doc.get("spec") or {})
        except ValidationError as err:
            return PlanEntry(index, kind, name, namespace, error=validation_message(err))
        return PlanEntry(index, kind, name, namespace,
                         note=f"spec is valid; plan does not render {kind} offline; passed over")
    if not isinstance(namespace, str):
        return PlanEntry(index, kind, name, None, error="metadata.namespace must be a string")
    try:
        objects, summary = renderer(doc, name, namespace, documents)
    except ValidationError as err:
        return PlanEntry(index, kind, name, namespace, error=validation_message(err))
    except (SizingError, ValueError) as err:
        return PlanEntry(index, kind, name, namespace, error=str(err))
    return PlanEntry(index, kind, name, namespace, objects=objects, summary=summary)


def plan_documents(docs: Iterable[Any], default_namespace: str = "default") -> PlanResult:
    """The objects the operator would create for each document, with notes and errors; never raises on bad input."""
    documents = list(_expand(docs))
    return PlanResult([plan_document(i, doc, default_namespace, documents) for i, doc in enumerate(documents)])
