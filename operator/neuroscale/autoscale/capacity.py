"""What one replica can serve: generated tokens at its decode rate plus prompt tokens at its prefill rate.

The autoscaler counts work in *generated-token equivalents*: a replica serves ``decode_tokens_per_s`` of them per
second, a generated token is one, and a prompt token is ``prefill_cost`` = decode rate ÷ prefill rate of one (the
share of a replica-second its prefill takes, in units of a generated token). Code and RAG traffic is mostly prompt;
counting only generated tokens would size it as if its prompts were free.

Both rates come from the sizing model's own estimate (`sizing.throughput`, calibrated on AWS's figures), so the two
agree: there a full batch decodes ``batch`` tokens every ``time_per_output_token`` and each prompt pauses it for
``time_to_first_token`` (Neuron runs no chunked prefill). Hence decode rate = batch ÷ time per output token and
prefill rate = the sized mean prompt ÷ its time to first token. At the sized request mix, generated + prompt ×
prefill cost per replica-second is exactly the sized tokens/s: the prefill is counted once, not in both the
capacity and the work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuroscale.sizing import SizingResult

__all__ = ["ReplicaModel", "replica_model_from_sizing"]


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


def replica_model_from_sizing(result: SizingResult, max_num_seqs: int | None = None) -> ReplicaModel:
    """The replica model of a sizing result: its full-batch decode rate and its prefill rate (module docstring)."""
    estimate = result.throughput
    decode = estimate.batch / estimate.time_per_output_token_seconds
    prompt, ttft = estimate.prompt_tokens, estimate.time_to_first_token_seconds
    prefill = prompt / ttft if prompt > 0 and ttft > 0 else math.inf
    return ReplicaModel(decode, prefill, max_num_seqs or estimate.batch)
