"""LoRA adapters on a ModelDeployment: fine-tuned variants served by the same replicas, each under its own model name.

The NxD Inference vLLM image (inf2, trn1) serves them with `--enable-lora --max-loras --lora-modules name=path`,
every adapter loaded into a fixed HBM slot at start-up (quickstart-vllm-online-serving.rst "Use MultiLoRA";
trn2-llama3.1-8b-multi-lora-tutorial.ipynb). The vLLM Neuron plugin image (trn2) documents no LoRA support, so
adapters keep a deployment on inf2/trn1.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from neuroscale.api.schema import ApiModel, Rule, crd_rules
from neuroscale.api.sources import MODEL_SOURCE, revision_rule

# An adapter name is a model name clients send and a `name=path` argument of --lora-modules: no '=' or spaces.
ADAPTER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
# vLLM accepts these --max-lora-rank values only (vllm/config/lora.py, MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
MAX_ADAPTERS = 16

ADAPTER_REVISION_RULE = revision_rule("an adapter's")
ADAPTERS_ENGINE_RULE = Rule("!has(self.adapters) || size(self.adapters) == 0 || self.engine.name == 'vllm'",
                            "adapters need engine vllm")
ADAPTERS_TRN2_RULE = Rule(
    "!has(self.adapters) || size(self.adapters) == 0 || !has(self.accelerator.instanceType) || "
    "!self.accelerator.instanceType.startsWith('trn2')",
    "adapters run on the NxD Inference image (inf2, trn1); the vLLM Neuron plugin on trn2 documents no LoRA serving",
)
ADAPTER_MODEL_NAME_RULE = Rule(
    "!has(self.adapters) || !has(self.model.servedModelName) || "
    "self.adapters.all(a, a.name != self.model.servedModelName)",
    "an adapter name must differ from model.servedModelName",
)


class AdapterSpec(ApiModel):
    """One LoRA adapter (a Hugging Face PEFT checkpoint) of the served model."""

    model_config = crd_rules(ADAPTER_REVISION_RULE)

    name: str = Field(
        description="Model name clients send to use this adapter; listed by the engine and cascade gateways.",
        max_length=63, pattern=ADAPTER_NAME,
    )
    source: str = Field(
        description="Where the adapter lives: hf://org/name or s3://bucket/prefix (downloaded before the engine "
        "starts).",
        max_length=512, pattern=MODEL_SOURCE,
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).", max_length=128)
    rank: int = Field(
        default=16, ge=1, le=512,
        description="LoRA rank (r in the adapter's adapter_config.json); every adapter slot is sized for the "
        "largest.",
    )

    @model_validator(mode="after")
    def _revision_for_hub(self) -> AdapterSpec:
        if self.revision is not None and not self.source.startswith("hf://"):
            raise ADAPTER_REVISION_RULE.refused()
        return self


def lora_rank_slot(adapters: list[AdapterSpec]) -> int:
    """The --max-lora-rank vLLM is given: the smallest value it accepts that holds the largest adapter's rank."""
    largest = max(adapter.rank for adapter in adapters)
    return next(rank for rank in VLLM_LORA_RANKS if rank >= largest)
