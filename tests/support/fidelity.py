"""The README's fidelity table: each configuration AWS documents (tests/data/neuron_published_configurations.yaml)
next to what neuroscale renders for it and what its sizing picks on its own.

Run `python -m tests.support.fidelity --write` to refresh the README section.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.render import render_model_deployment, sizing_request
from neuroscale.sizing import CATALOG, size

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "neuron_published_configurations.yaml"
README = ROOT / "README.md"
START, END = "<!-- generated:fidelity:start -->", "<!-- generated:fidelity:end -->"
# Flags that carry the documented shape; the rest of the command line is the same on every row.
SHAPE_FLAGS = ("--tensor-parallel-size", "--max-num-seqs", "--max-model-len")


@dataclass(frozen=True)
class Row:
    source: str
    model: str
    instance: str
    tp: int
    batch: int
    max_model_len: int
    replicas: int = 1
    max_time_per_output_token_ms: float | None = None
    why_not: str | None = None

    def spec(self, *, pinned: bool) -> ModelDeploymentSpec:
        accelerator: dict[str, Any] = ({"instanceType": self.instance, "tensorParallelDegree": self.tp} if pinned
                                       else {"families": [CATALOG[self.instance].family]})
        scaling = ({"minReplicas": self.replicas, "maxReplicas": self.replicas} if self.replicas > 1
                   else {"enabled": False})
        return ModelDeploymentSpec.model_validate({
            "model": {"source": self.model, "maxModelLen": self.max_model_len},
            "accelerator": accelerator, "autoscaling": scaling,
            "batching": {"maxNumSeqs": self.batch, "maxTimePerOutputTokenMs": self.max_time_per_output_token_ms}})

    def rendered(self) -> str:
        """Image tag, shape flags and Neuron request of the engine container neuroscale renders, pinned to the row."""
        objects = render_model_deployment("model", "models", self.spec(pinned=True), self.replicas).objects
        deployment = next(o for o in objects if o["kind"] == "Deployment")
        engine = deployment["spec"]["template"]["spec"]["containers"][0]
        args = engine["args"]
        flags = " ".join(f"{f} {args[args.index(f) + 1]}" for f in SHAPE_FLAGS)
        (neuron,) = [(k, v) for k, v in engine["resources"]["requests"].items() if k.startswith("aws.amazon.com/")]
        return f"`{engine['image'].rsplit(':', 1)[1]}`, `{flags}`, `{neuron[0].rsplit('/', 1)[1]}: {neuron[1]}`"

    def picked(self) -> tuple[str, int, int]:
        """(instance, TP, replicas per instance) sizing picks on its own within the row's family."""
        result = size(sizing_request(self.spec(pinned=False)))
        return result.instance.name, result.tensor_parallel, result.placement.replicas_per_instance

    def documented(self) -> tuple[str, int, int]:
        pinned = size(sizing_request(self.spec(pinned=True)))
        return self.instance, self.tp, pinned.placement.replicas_per_instance

    def matches(self) -> bool:
        return self.picked() == self.documented()


def load() -> list[Row]:
    return [Row(**row) for row in yaml.safe_load(DATA.read_text())]


def table() -> str:
    lines = ["| source | model | documented: instance, TP, batch | neuroscale renders (pinned): image, flags, "
             "request | sizing picks on its own | verdict |", "|---|---|---|---|---|---|"]
    for row in load():
        instance, tp, per_instance = row.picked()
        packed = f", {per_instance} per instance" if per_instance > 1 else ""
        replicas = f", {row.replicas} replicas" if row.replicas > 1 else ""
        if row.max_time_per_output_token_ms:
            replicas += f", ≤ {row.max_time_per_output_token_ms:g} ms/token"
        verdict = "matches" if row.matches() else f"differs: {row.why_not or 'UNEXPLAINED'}"
        lines.append(f"| {row.source} | {row.model.removeprefix('hf://')} | {row.instance}, TP {row.tp}, batch "
                     f"{row.batch}{replicas} | {row.rendered()} | {instance}, TP {tp}{packed} | {verdict} |")
    return "\n".join(lines)


def update(readme: str) -> str:
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{table()}\n{END}{after}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        README.write_text(update(README.read_text()))
    else:
        print(table())
