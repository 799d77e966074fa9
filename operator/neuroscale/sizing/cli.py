"""`neuroscale size MODEL`: sizing advice for a model on AWS Neuron, as text or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from neuroscale.cli import InputError, float_in, int_in, max_num_seqs_type
from neuroscale.sizing.catalog import CATALOG, FAMILY_TP
from neuroscale.sizing.sizer import SizingError, SizingRequest, SizingResult, size

EPILOG = """\
examples:
  neuroscale size hf://meta-llama/Llama-3.1-8B-Instruct
  neuroscale size hf://meta-llama/Llama-3.3-70B-Instruct --family inf2 --max-num-seqs 4
  neuroscale size s3://models/acme-chat/ --params-billions 13 --dtype fp8 --output json
  neuroscale size hf://meta-llama/Llama-3.1-70B --instance-type trn1.32xlarge --tp 32

  neuroscale size hf://meta-llama/Llama-3.3-70B-Instruct --family trn2 --min-replicas 2 --max-replicas 2
  neuroscale size hf://Qwen/Qwen2.5-7B-Instruct --prompt-tokens 3000 --output-tokens 200 --max-tpot-ms 30

The choice: among every (instance, tensor-parallel degree) whose weights, KV cache and runtime margin fit its
NeuronCores' memory (and whose weights fit host memory to load), the lowest cost per generated token at full batch
for the request mix, averaged over the replica range (replicas smaller than an instance share it, each paying its
share once enough replicas fill it), among those decoding within --max-tpot-ms. Exit status 2 when the model
cannot fit as asked; the message says what would.
"""

# Bounds checked while the command line is parsed. Each is far past anything that fits on the largest Neuron
# instance (trn2.48xlarge: 1.5 TiB, i.e. ~700B parameters in bf16), so a value beyond it could only ever get
# "nothing fits", and it keeps the arithmetic finite (--params-billions 1e308 overflowed).
params_billions_type = float_in(0.0, 100_000.0, low_open=True)  # 100 trillion parameters
max_model_len_type = int_in(1, 10_000_000)  # the longest context windows offered are 10M tokens
tensor_parallel_type = int_in(1, 1024)  # the largest instance has 64 NeuronCores
replicas_type = int_in(1, 1000)  # the API's replica bound


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "size",
        help="choose a Neuron instance and tensor-parallel degree for a model",
        description="Size a model for AWS Inferentia2 / Trainium: instance type, NeuronCores, memory, "
        "estimated throughput and cost.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="model source, e.g. hf://org/name or s3://bucket/prefix/")
    parser.add_argument(
        "--params-billions", type=params_billions_type,
        help="parameter count in billions, when MODEL names no known model"
    )
    parser.add_argument("--architecture", help="a known architecture to size as, e.g. Llama-3.1-8B")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp8", "int8"), default="bf16", help="weight dtype")
    parser.add_argument(
        "--kv-cache-dtype", choices=("auto", "fp8"), default="auto", help="KV-cache dtype (auto: bf16)"
    )
    parser.add_argument("--max-model-len", type=max_model_len_type, default=4096,
                        help="tokens per sequence (default 4096)")
    parser.add_argument("--max-num-seqs", type=max_num_seqs_type, default=8,
                        help="concurrent sequences (default 8)")
    parser.add_argument("--instance-type", choices=tuple(CATALOG), metavar="TYPE", help="pin the instance type")
    parser.add_argument("--tp", type=tensor_parallel_type, dest="tensor_parallel", help="pin the tensor-parallel degree")
    parser.add_argument(
        "--family",
        action="append",
        choices=tuple(FAMILY_TP),
        dest="families",
        help="only consider this instance family (repeatable)",
    )
    parser.add_argument("--prompt-tokens", type=max_model_len_type, help="mean prompt tokens per request (default 1024)")
    parser.add_argument("--output-tokens", type=max_model_len_type,
                        help="mean generated tokens per request (default 256)")
    parser.add_argument("--max-tpot-ms", type=float_in(0.0, 60000.0, low_open=True), dest="max_tpot_ms",
                        help="slowest acceptable milliseconds per output token at full batch")
    parser.add_argument("--min-replicas", type=replicas_type, default=1, help="fewest replicas the deployment runs")
    parser.add_argument("--max-replicas", type=replicas_type, default=None,
                        help="most replicas (default: --min-replicas); packing is priced over the range")
    parser.add_argument("--output", choices=("text", "json"), default="text", help="output format")
    parser.set_defaults(func=main)
    return parser


def result_to_dict(result: SizingResult) -> dict[str, Any]:
    """A JSON-ready view of a sizing result (sizes in GiB, rounded for reading)."""
    arch = result.architecture
    return {
        "model": {
            "architecture": arch.name,
            "paramsBillions": arch.params_billions,
            "estimatedShape": arch.estimated,
        },
        "instanceType": result.instance.name,
        "tensorParallel": result.tensor_parallel,
        "neuronCores": result.neuron_cores,
        "neuronDevices": result.neuron_devices,
        "memoryGiB": {
            "weights": round(result.weights_gib, 2),
            "headPadding": round(result.padding_gib, 2),
            "kvCache": round(result.kv_cache_gib, 2),
            "overhead": round(result.overhead_gib, 2),
            "required": round(result.required_gib, 2),
            "capacity": round(result.capacity_gib, 2),
            "host": round(result.host_memory_gib, 2),
        },
        "neuronResource": {result.placement.resource: result.placement.count},
        "replicasPerInstance": result.placement.replicas_per_instance,
        "pricePerHour": result.price_per_hour,
        "tokensPerSecond": round(result.tokens_per_second, 1),
        "tokensPerSecondRange": [round(result.throughput.low, 1), round(result.throughput.high, 1)],
        "timePerOutputTokenMs": round(result.throughput.time_per_output_token_seconds * 1e3, 1),
        "timeToFirstTokenMs": round(result.throughput.time_to_first_token_seconds * 1e3, 1),
        "costPerMillionTokens": (
            None if result.cost_per_million_tokens is None else round(result.cost_per_million_tokens, 3)
        ),
        "explanation": result.explanation,
    }


def main(args: argparse.Namespace) -> int:
    request = SizingRequest(
        source=args.model,
        params_billions=args.params_billions,
        architecture=args.architecture,
        dtype=args.dtype,
        kv_cache_dtype=args.kv_cache_dtype,
        max_model_len=args.max_model_len,
        max_num_seqs=args.max_num_seqs,
        instance_type=args.instance_type,
        tensor_parallel=args.tensor_parallel,
        families=tuple(args.families or ()),
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        max_time_per_output_token_ms=args.max_tpot_ms,
        replicas=(args.min_replicas, args.max_replicas or args.min_replicas),
    )
    try:
        result = size(request)
    except SizingError as err:  # the model does not fit as asked: an input error, exit status 2
        raise InputError(str(err)) from None
    if args.output == "json":
        print(json.dumps(result_to_dict(result), indent=2))
    else:
        print(result.explanation)
    return 0
