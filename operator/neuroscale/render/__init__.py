"""Spec → desired Kubernetes objects (pure: no I/O, no Kubernetes client)."""

from neuroscale.render.engines import EngineImages
from neuroscale.render.modeldeployment import RenderedModel, render_model_deployment, sizing_request
from neuroscale.render.plan import PlanEntry, PlanResult, plan_documents

__all__ = [
    "EngineImages",
    "PlanEntry",
    "PlanResult",
    "RenderedModel",
    "plan_documents",
    "render_model_deployment",
    "sizing_request",
]
