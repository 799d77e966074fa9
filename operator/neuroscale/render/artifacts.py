"""The compiled-artifact key: a hash of everything that changes a Neuron compiled graph, and the S3 layout under it.

Neuron engines never check that restored artifacts match the configuration they are asked to serve: "any differing
model configurations … will not trigger re-compilation" (NEURON.md "Compile cache"), so a restored graph for other
shapes is served silently. Artifacts are therefore only ever restored from `<compileCache.uri>/<key>/`, where the key
covers the model and its revision, the engine and its image (which pins the Neuron SDK), the compiler target (the
accelerator: trn1 and trn1n are the same Trainium chip), the tensor-parallel degree, and the engine's own arguments
and environment, which carry the batch size, sequence length, buckets, dtype, quantization, KV-cache layout and any
`--additional-config` neuron config a user adds. Arguments and variables that only change how the server runs
(name, host, port, timeouts, tokens) are left out, so that changing them does not cost a recompile; anything new an
engine adds is in the key until it is listed here, so a forgotten setting costs a recompile, never a stale graph.

Layout under `<compileCache.uri>/<key>/` (written by the first replica that compiled, see render/compile_cache.py):
`sets/<pod>/neuron/…` (the pod's /var/cache/neuron: compiled artifacts and any quantized checkpoint),
`sets/<pod>/weights/…` (the Hub weights it loaded, so a hit needs no Hub), and `complete`, written last: its first
line names the set. Only `complete` makes a key a hit; a half-finished upload never is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

# Bump when the meaning of the key or the layout under it changes: every key changes with it.
KEY_SCHEMA = 1
# 128 bits of sha256: collisions are out of reach, and the S3 prefix stays readable.
KEY_HEX_DIGITS = 32
MARKER = "complete"

# Engine flags (with their value) that do not shape the compiled graph.
_RUNTIME_FLAGS = frozenset({"--served-model-name", "--host", "--port"})
# Environment variables that do not shape the compiled graph: where things live, how long to wait, credentials.
_RUNTIME_VARIABLES = frozenset({
    "HOME", "HF_HOME", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS",
    "HUGGINGFACE_HUB_CACHE", "VLLM_NEURON_COMPILATION_TIMEOUT", "NEURON_LIBTORCH_COMPILATION_TIMEOUT",
    "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "SERVING_PROMETHEUS",
})


@dataclass(frozen=True)
class ArtifactInputs:
    """What the compiled graph depends on, as values (the hash input)."""

    model: str
    revision: str | None
    engine: str
    image: str
    target: str  # the accelerator the compiler targets: inferentia2, trainium, trainium2
    tensor_parallel: int
    max_num_seqs: int
    max_model_len: int
    dtype: str
    kv_cache_dtype: str
    # The engine container's arguments and literal environment, runtime-only entries removed, in render order.
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    # Checkpoints compiled into the same graph besides the model (a speculative head: "both the target and the
    # draft model compile", vllm-neuron EAGLE3 tutorial), as `source@revision`; the arguments name only their paths.
    companions: tuple[str, ...] = ()

    def canonical(self) -> str:
        """The stable JSON the key hashes (also written into the marker, so a key can be explained later)."""
        return json.dumps({"schema": KEY_SCHEMA, **asdict(self)}, sort_keys=True, separators=(",", ":"))


def artifact_key(inputs: ArtifactInputs) -> str:
    """The key naming the artifacts compiled for `inputs`: equal inputs, equal key, whoever asks."""
    return hashlib.sha256(inputs.canonical().encode()).hexdigest()[:KEY_HEX_DIGITS]


def graph_args(args: list[str]) -> tuple[str, ...]:
    """The arguments that shape the graph: `args` without the runtime-only flags and their values."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        flag = arg.split("=", 1)[0]
        if flag in _RUNTIME_FLAGS:
            skip = "=" not in arg
            continue
        kept.append(arg)
    return tuple(kept)


def graph_env(env: list[dict]) -> tuple[tuple[str, str], ...]:
    """Literal variables that may shape the graph (secret references never reach the key)."""
    return tuple((item["name"], item["value"]) for item in env
                 if "value" in item and item["name"] not in _RUNTIME_VARIABLES)


def keyed_prefix(uri: str, key: str) -> str:
    """`<uri>/<key>/`: the only prefix a ModelDeployment restores from and uploads to."""
    return f"{uri.rstrip('/')}/{key}/"


def marker_location(prefix: str) -> tuple[str, str]:
    """(bucket, object key) of the completion marker under a keyed prefix (`keyed_prefix`)."""
    bucket, _, path = prefix.removeprefix("s3://").partition("/")
    return bucket, f"{path}{MARKER}"
