"""Spec → desired Kubernetes objects (pure: no I/O, no Kubernetes client)."""

from neuroscale.render.engines import EngineImages
from neuroscale.render.modeldeployment import RenderedModel, render_model_deployment, sizing_request

__all__ = ["EngineImages", "RenderedModel", "render_model_deployment", "sizing_request"]
