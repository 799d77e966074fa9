"""Speculative decoding rendered for the vLLM image an instance family gets, and its head's download.

Both images take vLLM's `--speculative-config` JSON with the head as a local path (downloaded by an init container,
like the model, so a compile hit or miss needs no Hub):
- NxD Inference (inf2, trn1): `{"model", "method": "eagle", "num_speculative_tokens", "max_model_len"}`, as in
  quickstart-vllm-online-serving.rst ("Use Eagle speculative decoding"); EAGLE3 heads take method eagle3 ("Eagle V1
  and V3 are supported", vllm-user-guide-v1.rst). The plugin turns the config into NxD Inference's fused speculation
  itself (`enable_fused_speculation`, `speculation_length`, and `enable_eagle_speculation` for method eagle:
  vllm-neuron `neuronx_distributed_model_loader.py`), so no `override_neuron_config` entry is rendered for it.
- vLLM Neuron plugin (trn2): `{"method": "eagle3", "model", "num_speculative_tokens"}`, as in features-guide.md
  ("Speculative decoding (EAGLE3)") and tutorial-eagle3-speculative-decoding-llama-3-1.md; EAGLE3 only.
"""

from __future__ import annotations

import json

from neuroscale.api.speculative_decoding import SpeculativeDecodingSpec
from neuroscale.render.downloads import Download
from neuroscale.sizing.memory import PLUGIN_FAMILIES

# The head's checkpoint on the models volume (engines.MODELS_DIR).
SPECULATOR_DIR = "/models/speculator"


def speculative_config(speculation: SpeculativeDecodingSpec, family: str, max_model_len: int) -> dict[str, object]:
    """vLLM's speculative config for the image `family` runs; a ValueError for a method that image does not take."""
    config: dict[str, object] = {
        "method": speculation.method,
        "model": SPECULATOR_DIR,
        "num_speculative_tokens": speculation.num_speculative_tokens,
    }
    if family in PLUGIN_FAMILIES:
        if speculation.method != "eagle3":
            raise ValueError(
                f"speculativeDecoding.method {speculation.method} on {family}: the vLLM Neuron plugin takes EAGLE3 "
                "heads only; use method eagle3 with an EAGLE3 head, or accelerator.families inf2/trn1"
            )
        return config
    # NxD Inference compiles the head for a sequence length of its own; the documented example gives it the model's.
    return {**config, "max_model_len": max_model_len}


def speculative_args(speculation: SpeculativeDecodingSpec | None, family: str, max_model_len: int) -> list[str]:
    if speculation is None:
        return []
    config = speculative_config(speculation, family, max_model_len)
    return ["--speculative-config", json.dumps(config, sort_keys=True)]


def speculator_download(speculation: SpeculativeDecodingSpec | None) -> list[Download]:
    if speculation is None:
        return []
    draft = speculation.draft_model
    return [Download("download-speculator", draft.source, draft.revision, SPECULATOR_DIR)]
