"""Speculative decoding on a ModelDeployment: an EAGLE head proposes tokens that the served model verifies in one step.

What the Neuron vLLM images support decides the API (aws-neuron-sdk docs, SDK 2.32): the NxD Inference
image (inf2, trn1) takes EAGLE v1 heads converted for NxD Inference and EAGLE3 heads ("Eagle V1 and V3 are
supported", vllm-user-guide-v1.rst); the vLLM Neuron plugin image (trn2) takes EAGLE3 only (vllm-neuron
features-guide.md, migration-nxdi-to-vllm-neuron.md). A separate draft model is supported by neither: "speculative
decoding with a draft model" runs only on the legacy vLLM v0 fork (vllm-user-guide-v1.rst, Known Issues 5), so
`method: draft` is refused with that explanation rather than rendered into a server that would not start.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neuroscale.api.schema import ApiModel, Rule, crd_rules
from neuroscale.api.sources import MODEL_SOURCE, revision_rule

SpeculativeMethod = Literal["eagle", "eagle3", "draft"]
# The instance families whose vLLM image is NxD Inference (EAGLE v1 and LoRA are documented there only).
NXDI_FAMILIES = ("inf2", "trn1", "trn1n")

DRAFT_REVISION_RULE = revision_rule("a draftModel")
DRAFT_METHOD_RULE = Rule(
    "self.method != 'draft'",
    "method draft is not supported: the Neuron vLLM images serve a separate draft model only on the legacy vLLM v0 "
    "fork (Neuron SDK 2.26); use an EAGLE head with method eagle (inf2, trn1) or eagle3",
)
SPECULATION_ENGINE_RULE = Rule(
    "!has(self.speculativeDecoding) || self.engine.name == 'vllm'", "speculativeDecoding needs engine vllm"
)
EAGLE_TRN2_RULE = Rule(
    "!has(self.speculativeDecoding) || self.speculativeDecoding.method != 'eagle' || "
    "!has(self.accelerator.instanceType) || !self.accelerator.instanceType.startsWith('trn2')",
    "method eagle (EAGLE v1) runs on the NxD Inference image (inf2, trn1); the vLLM Neuron plugin on trn2 takes "
    "method eagle3 only",
)


class DraftModelSpec(ApiModel):
    """The speculator's checkpoint: an EAGLE head trained against the served model."""

    model_config = crd_rules(DRAFT_REVISION_RULE)

    source: str = Field(
        description="Where the head's weights live: hf://org/name or s3://bucket/prefix (downloaded before the "
        "engine starts, like the model). EAGLE v1 heads must be converted for NxD Inference (they carry the served "
        "model's LM head).",
        max_length=512,
        pattern=MODEL_SOURCE,
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).", max_length=128)
    parameters_billions: float | None = Field(
        default=None, gt=0, le=100,
        description="Parameter count in billions, for sizing; omitted → one decoder layer of the served model plus "
        "its fusion layer (an estimate).",
    )

    @model_validator(mode="after")
    def _revision_for_hub(self) -> DraftModelSpec:
        if self.revision is not None and not self.source.startswith("hf://"):
            raise DRAFT_REVISION_RULE.refused()
        return self


class SpeculativeDecodingSpec(ApiModel):
    """Speculative decoding: the head proposes numSpeculativeTokens tokens, the model verifies them in one step."""

    model_config = crd_rules(DRAFT_METHOD_RULE)

    method: SpeculativeMethod = Field(
        description="eagle (EAGLE v1 head converted for NxD Inference; inf2/trn1), eagle3 (EAGLE3 head; any "
        "family), draft (refused: no Neuron vLLM image neuroscale renders serves a separate draft model).",
    )
    draft_model: DraftModelSpec = Field(description="The speculator's checkpoint.")
    num_speculative_tokens: int = Field(
        default=5, ge=1, le=16,
        description="Tokens proposed per step (compiled in; AWS's examples use 3-7).",
    )
    expected_acceptance_rate: float | None = Field(
        default=None, gt=0, lt=1,
        description="Share of proposed tokens the model accepts, for the throughput estimate only; omitted → 0.7 "
        "(an assumption; measure yours with vLLM's spec_decode metrics).",
    )

    @model_validator(mode="after")
    def _method_served(self) -> SpeculativeDecodingSpec:
        if self.method == "draft":
            raise DRAFT_METHOD_RULE.refused()
        return self
