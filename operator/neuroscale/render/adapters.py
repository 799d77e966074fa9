"""LoRA adapters rendered for vLLM on NxD Inference, and their downloads.

The flags follow the NxD Inference vLLM quickstart ("Use MultiLoRA", quickstart-vllm-online-serving.rst) and the
multi-LoRA tutorial's server script (trn2-llama3.1-8b-multi-lora-tutorial.ipynb): `--enable-lora`, `--max-loras`
(adapters held in HBM), `--max-lora-rank`, and `--lora-modules name=path ...` registering every adapter at start-up.
`--max-loras` is the number of adapters, so every adapter has a fixed HBM slot from the start and none is swapped in
from host memory (NxD Inference "requires all the LoRA adapters ... to be fully pre-loaded into device memory" when
dynamic multi-LoRA is off: feature-guide.rst "Multi-LoRA Serving"). Adapters must be local before the server starts
(same section), so init containers download them onto the models volume.
"""

from __future__ import annotations

from neuroscale.api.adapters import AdapterSpec, lora_rank_slot
from neuroscale.render.downloads import Download

# Adapters on the models volume (engines.MODELS_DIR), one directory per adapter name.
ADAPTERS_DIR = "/models/adapters"


def adapter_path(adapter: AdapterSpec) -> str:
    return f"{ADAPTERS_DIR}/{adapter.name}"


def lora_args(adapters: list[AdapterSpec]) -> list[str]:
    if not adapters:
        return []
    modules = [f"{adapter.name}={adapter_path(adapter)}" for adapter in adapters]
    return ["--enable-lora", "--max-loras", str(len(adapters)), "--max-lora-rank", str(lora_rank_slot(adapters)),
            "--lora-modules", *modules]


def adapter_downloads(adapters: list[AdapterSpec]) -> list[Download]:
    # Indexed names: an adapter name may hold characters a container name may not ('.', '_', capitals).
    return [Download(f"download-adapter-{index}", adapter.source, adapter.revision, adapter_path(adapter))
            for index, adapter in enumerate(adapters)]
