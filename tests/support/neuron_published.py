"""The published Neuron throughput rows (tests/data/neuron_published_throughput.yaml) and the model's estimate of each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neuroscale.sizing import CATALOG, get_architecture
from neuroscale.sizing.throughput import CALIBRATED, ThroughputEstimate, ThroughputModel, estimate, load_of

DATA = Path(__file__).resolve().parents[1] / "data" / "neuron_published_throughput.yaml"


@dataclass(frozen=True)
class PublishedRow:
    """One published figure: a model on `tp` cores of `instance`, `batch` requests of input/output tokens."""

    id: str
    source: str
    model: str
    instance: str
    tp: int
    batch: int
    dtype: str
    input_tokens: int
    output_tokens: int
    tokens_per_second: float
    ttft_ms: float | None
    tpot_ms: float | None
    before: float
    published_overall_tokens_per_second: float | None = None

    def estimate(self, model: ThroughputModel = CALIBRATED) -> ThroughputEstimate:
        load = load_of(get_architecture(self.model), self.tp, self.dtype, "auto")  # type: ignore[arg-type]
        return estimate(CATALOG[self.instance], self.tp, load, batch=self.batch, prompt_tokens=self.input_tokens,
                        output_tokens=self.output_tokens, model=model)

    def error(self, model: ThroughputModel = CALIBRATED) -> float:
        """Relative error of the estimate against the published throughput (+0.10 = 10 % over)."""
        return self.estimate(model).tokens_per_second / self.tokens_per_second - 1


def load() -> tuple[dict[str, str], list[PublishedRow]]:
    """(sources by key, rows) from the data file."""
    data: dict[str, Any] = yaml.safe_load(DATA.read_text())
    return data["sources"], [PublishedRow(**row) for row in data["rows"]]
