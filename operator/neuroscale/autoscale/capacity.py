"""What one replica can serve: generated tokens at the sizing model's decode rate plus prompt tokens at a prefill rate.

The simulator counts work in *generated-token equivalents*: a replica serves ``decode_tokens_per_s`` of them per
second, a generated token is one, and a prompt token is ``prefill_cost`` = decode rate ÷ prefill rate of one (the
share of a replica-second its prefill takes, in units of a generated token). Code and RAG traffic is mostly prompt;
counting only generated tokens would size it as if its prompts were free.

The decode rate is the sizing model's (`neuroscale.sizing.size`, built on `sizing.throughput`), so its calibration
flows in unchanged. Prefill is compute-bound (one forward pass over the prompt streams the weights once for many
tokens), so its rate is the replica's bf16 peak × PREFILL_FLOPS_EFFICIENCY ÷ (2 × active parameters) FLOPs a token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuroscale.sizing import SizingResult

__all__ = ["PREFILL_FLOPS_EFFICIENCY", "ReplicaModel", "replica_model_from_sizing"]

# Share of the NeuronCores' bf16 peak a prefill pass reaches. Uncalibrated: NEURON.md publishes output throughput
# with prefill included but no prefill-only figure; 0.3 is a typical large-matmul efficiency for bucketed prefill
# without chunking. At this value a Llama-3.1-8B prompt token on inf2.8xlarge costs ~2.4 % of a generated token.
PREFILL_FLOPS_EFFICIENCY = 0.3


@dataclass(frozen=True)
class ReplicaModel:
    """One replica's serving capacity: ``decode_tokens_per_s`` generated tokens/s at ``max_num_seqs`` sequences,
    and ``prefill_tokens_per_s`` prompt tokens/s."""

    decode_tokens_per_s: float
    prefill_tokens_per_s: float = math.inf
    max_num_seqs: int = 8

    def __post_init__(self) -> None:
        if not (math.isfinite(self.decode_tokens_per_s) and self.decode_tokens_per_s > 0):
            raise ValueError(f"decode rate must be a positive number of tokens/s, got {self.decode_tokens_per_s}")
        if not self.prefill_tokens_per_s > 0:
            raise ValueError(f"prefill rate must be a positive number of tokens/s, got {self.prefill_tokens_per_s}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")

    @property
    def prefill_cost(self) -> float:
        """Generated-token equivalents one prompt token costs."""
        return self.decode_tokens_per_s / self.prefill_tokens_per_s

    def work(self, generated: float, prompt: float) -> float:
        """Generated-token equivalents of ``generated`` generated and ``prompt`` prompt tokens (or rates)."""
        return generated + prompt * self.prefill_cost


def replica_model_from_sizing(result: SizingResult, max_num_seqs: int = 8) -> ReplicaModel:
    """The replica model of a sizing result: its decode rate and a prefill rate on its NeuronCores."""
    instance = result.instance
    peak_flops = instance.bf16_tflops_per_device * 1e12 * result.tensor_parallel / instance.cores_per_device
    flops_per_token = 2 * result.architecture.decode_params_billions * 1e9
    prefill = peak_flops * PREFILL_FLOPS_EFFICIENCY / flops_per_token if flops_per_token > 0 else math.inf
    return ReplicaModel(float(result.tokens_per_second), prefill, max_num_seqs)
