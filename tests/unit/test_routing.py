"""Routing core: the ring and the load bound (a key's owner is stable, a departed replica moves only its own keys,
no replica passes the bound, spills follow the ring), the routing key of chat and completions requests, the replica
set read from EndpointSlices, the prefix-trace reader and conversation recovery, the simulator (LRU prefix cache,
ceiling, policies), and what `spec.routing` renders (config, Role, RoleBinding, token)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.render.inferencecascade import render_inference_cascade, resolve_tiers
from neuroscale.routing.balancer import (
    HashRing, RunningMean, choose, least_loaded, load_bound, request_factor,
)
from neuroscale.routing.endpoints import Replica, replicas_from_slices
from neuroscale.routing.keys import HotPrefixes, block_openings, prompt_openings, routing_key
from neuroscale.routing.simulator import LRUBlocks, SimulationSettings, ceiling, compare, replay
from neuroscale.routing.traces import PrefixTraceError, TraceRequest, load_prefix_trace, sessions

NAMES = [f"10.0.0.{i}:8000" for i in range(8)]


def test_a_key_has_one_owner_whatever_the_order_replicas_were_listed_in() -> None:
    forward, backward = HashRing(NAMES), HashRing(reversed(NAMES))
    for index in range(200):
        key = f"conversation {index}".encode()
        assert next(forward.walk(key)) == next(backward.walk(key))
        assert sorted(forward.walk(key)) == sorted(NAMES)


def test_removing_a_replica_moves_only_its_own_keys_to_their_next_replica() -> None:
    full, without = HashRing(NAMES), HashRing(NAMES[1:])
    moved = 0
    for index in range(2000):
        key = f"k{index}".encode()
        before = list(full.walk(key))
        if before[0] == NAMES[0]:
            moved += 1
            assert next(without.walk(key)) == before[1]
        else:
            assert next(without.walk(key)) == before[0]
    assert 2000 / 8 * 0.6 < moved < 2000 / 8 * 1.4  # the ring spreads keys evenly enough


def test_keys_spread_evenly_over_the_ring() -> None:
    ring = HashRing(NAMES)
    owners = Counter(next(ring.walk(f"k{i}".encode())) for i in range(16_000))
    assert max(owners.values()) / min(owners.values()) < 1.35


def test_load_bound_is_factor_times_mean_with_this_request_never_below_the_lightest_plus_one() -> None:
    assert load_bound(15, 4, 1.25) == 5
    assert load_bound(0, 16, 1.25) == 1
    assert load_bound(30, 4, 1.25, lightest=9) == 10
    assert load_bound(7, 4, math.inf) == math.inf


def test_a_longer_prompt_gets_more_slack_up_to_twice_the_average() -> None:
    assert request_factor(1.25, 100, 100) == 1.25
    assert request_factor(1.25, 200, 100) == request_factor(1.25, 900, 100) == 1.5
    assert request_factor(1.25, 0, 100) == 1.0
    assert request_factor(1.25, 100, None) == 1.25
    mean = RunningMean(horizon=10)
    assert mean.add(50) == 50 and mean.add(150) == 60


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=len(NAMES), max_size=len(NAMES)), st.binary(max_size=16),
       st.floats(1.01, 3.0))
def test_the_choice_never_passes_the_bound_and_lists_every_ready_replica(loads: list[int], key: bytes,
                                                                         factor: float) -> None:
    ring = HashRing(NAMES)
    in_flight = dict(zip(NAMES, loads, strict=True))
    order = choose(ring, key, in_flight, factor=factor)
    assert sorted(order) == sorted(NAMES)
    assert in_flight[order[0]] + 1 <= load_bound(sum(loads), len(NAMES), factor, min(loads))


def test_an_owner_over_its_bound_spills_to_its_next_replica_on_the_ring() -> None:
    ring = HashRing(NAMES)
    walk = list(ring.walk(b"hot"))
    loads = dict.fromkeys(NAMES, 1) | {walk[0]: 5}
    assert choose(ring, b"hot", loads)[:2] == [walk[1], walk[0]]  # the owner stays next, as a retry
    assert choose(ring, b"hot", dict.fromkeys(NAMES, 1))[0] == walk[0]


def test_not_ready_replicas_are_skipped_and_no_key_means_least_loaded() -> None:
    ring = HashRing(NAMES)
    owner = next(ring.walk(b"k"))
    ready = [name for name in NAMES if name != owner]
    assert owner not in choose(ring, b"k", {}, ready)
    assert choose(ring, None, dict.fromkeys(NAMES, 3) | {NAMES[5]: 0})[0] == NAMES[5]
    assert choose(ring, b"k", {}, []) == []
    assert {least_loaded(NAMES, {}, turn)[0] for turn in range(8)} == set(NAMES), "idle replicas take turns"


def prefix_key(body: dict, hot: HotPrefixes | None = None, replicas: int = 4, endpoint: str = "chat") -> bytes | None:
    return routing_key("prefix", None, prompt_openings(endpoint, body, 2048), hot or HotPrefixes(), replicas)


def test_the_prefix_key_is_the_same_on_every_turn_of_a_conversation() -> None:
    first = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "About Rome?"}]}
    later = {"messages": [*first["messages"], {"role": "assistant", "content": "Old."},
                          {"role": "user", "content": "And Paris?"}]}
    other = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "About Oslo?"}]}
    assert prefix_key(first) == prefix_key(later) != prefix_key(other)
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "About Rome?"}]}]}
    assert "About Rome?" in prompt_openings("chat", parts, 2048)[0]
    assert [len(o) for o in prompt_openings("completions", {"prompt": "x" * 5000}, 2048)] == [2048, 4096, 5000]
    assert prompt_openings("completions", {"prompt": [[1, 2, 3]]}, 2048) != [""]  # token ids still give a key
    assert len(prompt_openings("chat", later, 2048)) == 2


def test_an_opening_every_conversation_shares_is_no_key_the_next_one_is() -> None:
    hot = HotPrefixes(horizon=100)
    greeting = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    keys = set()
    for index in range(300):  # every conversation opens alike, then asks its own question
        body = {"messages": [*greeting, {"role": "assistant", "content": "Hi."},
                             {"role": "user", "content": f"Question {index}?"}]}
        keys.add(prefix_key(body, hot))
    assert len(keys) > 250, "once the shared opening is hot, each conversation is keyed by its second question"
    lone = HotPrefixes(horizon=100)
    assert len({prefix_key({"messages": greeting}, lone) for _ in range(5)}) == 1  # nothing longer to go to


def test_block_openings_leave_out_the_partial_last_block() -> None:
    assert block_openings((1, 2, 3)) == [b"1", b"1,2"]
    assert block_openings((7,)) == [b"7"]
    assert len(block_openings(tuple(range(20)), 8)) == 8


def test_a_session_header_wins_and_least_loaded_has_no_key() -> None:
    hot = HotPrefixes()
    assert routing_key("prefix", "user-1", ["x"], hot, 4) == routing_key("session", "user-1", [], hot, 4)
    assert routing_key("session", None, ["x"], hot, 4) is None
    assert routing_key("least-loaded", None, ["x"], hot, 4) is None


def test_replicas_come_from_the_named_port_of_every_slice() -> None:
    slices = [
        {"ports": [{"name": "http", "port": 8000}, {"name": "metrics", "port": 9000}],
         "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                       {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "terminating": True}},
                       {"addresses": ["10.0.0.3"]}]},
        {"ports": [{"name": "http", "port": 8000}], "endpoints": [{"addresses": ["fd00::4"]}]},
        {"ports": [{"name": "other", "port": 1}], "endpoints": [{"addresses": ["10.0.0.9"]}]},
        {"ports": None, "endpoints": None},
    ]
    assert replicas_from_slices(slices, "http") == [
        Replica("10.0.0.1:8000", True), Replica("10.0.0.2:8000", False), Replica("10.0.0.3:8000", True),
        Replica("[fd00::4]:8000", True)]


def write_trace(path: Path, rows: list[tuple[int, list[int]]]) -> Path:
    path.write_text("".join(json.dumps({"timestamp": t, "input_length": 512 * len(ids), "output_length": 10,
                                        "hash_ids": ids}) + "\n" for t, ids in rows))
    return path


def test_the_trace_reader_sorts_by_arrival_and_names_a_bad_line(tmp_path: Path) -> None:
    trace = load_prefix_trace(write_trace(tmp_path / "t.jsonl", [(2000, [1, 2]), (1000, [3])]))
    assert [r.arrival_s for r in trace] == [1.0, 2.0]
    (tmp_path / "bad.jsonl").write_text('{"timestamp": 0}\n')
    with pytest.raises(PrefixTraceError, match="bad.jsonl:1"):
        load_prefix_trace(tmp_path / "bad.jsonl")


def test_a_turn_continues_the_conversation_whose_prompt_less_its_last_block_it_starts_with() -> None:
    requests = [TraceRequest(0, 0, 0, tuple(blocks)) for blocks in
                ([1, 2, 3], [1, 2, 4, 5], [9], [1, 2, 4, 5, 6], [1, 7], [9], [0, 5], [0, 6], [0, 5, 8], [0, 6, 1])]
    labels = sessions(requests)
    assert labels[0] == labels[1] == labels[3]  # [1, 2] then [1, 2, 4, 5] carry on
    assert len({labels[2], labels[4], labels[5], labels[0]}) == 4  # one block ([1], [9]) is too little to say
    assert labels[6] == labels[8] and labels[7] == labels[9] != labels[6]  # [0] is shared: [0, 5] and [0, 6] differ


def test_the_lru_prefix_cache_reuses_only_a_leading_run_and_evicts_the_oldest() -> None:
    cache = LRUBlocks(4)
    cache.admit([1, 2, 3])
    assert cache.cached_prefix([1, 2, 9, 3]) == 2
    cache.admit([4, 5])  # 1 is the least recently used
    assert cache.cached_prefix([1, 2]) == 0 and cache.cached_prefix([2, 3, 4, 5]) == 4


def test_prefix_routing_keeps_documents_on_one_replica_and_the_ceiling_bounds_every_policy() -> None:
    # 41 documents of 6 blocks (a count round-robin cannot line up with 4 replicas), each asked 5 times with a
    # different last block; a replica holds about a quarter of them.
    rows = [TraceRequest(float(turn * 41 + doc), 3072, 20, (*(doc * 100 + b for b in range(5)), 10_000 + turn * 41 + doc))
            for turn in range(5) for doc in range(41)]
    results = {r.policy: r for r in compare(rows, SimulationSettings(replicas=4, blocks_per_replica=80))}
    assert results["prefix"].hit_rate > 2 * results["round-robin"].hit_rate
    for result in results.values():
        assert result.hit_rate <= results["ceiling"].hit_rate + 1e-9
        assert result.prefill_tokens >= results["ceiling"].prefill_tokens
    assert results["least-loaded"].imbalance <= results["consistent-hash"].imbalance
    assert replay(rows, "prefix", SimulationSettings(replicas=1)).hit_rate == ceiling(
        rows, SimulationSettings(replicas=1)).hit_rate


def cascade_spec(**overrides: object) -> InferenceCascadeSpec:
    return InferenceCascadeSpec.model_validate({"tiers": [{"name": "small", "modelDeployment": {"name": "llama"}},
                                                          {"name": "big", "bedrock": {"modelId": "m", "region": "us-east-1"}}],
                                                **overrides})


def rendered(spec: InferenceCascadeSpec) -> dict[str, dict]:
    tiers = resolve_tiers(spec, "models", {"llama": None})
    return {o["kind"]: o for o in render_inference_cascade("chat", "models", spec, tiers, None, image="img").objects}


def test_prefix_routing_by_default_renders_an_endpointslice_reader_for_the_gateway() -> None:
    objects = rendered(cascade_spec())
    config = json.loads(objects["ConfigMap"]["data"]["gateway.json"])
    assert config["tiers"][0]["routing"]["service"] == "llama"
    assert config["tiers"][0]["routing"]["policy"] == "prefix"
    assert config["tiers"][1].get("routing") is None  # an external tier has no replicas to choose
    assert objects["Role"]["rules"] == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                                         "verbs": ["get", "list", "watch"]}]
    assert objects["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "chat-gateway",
                                                   "namespace": "models"}]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "chat-gateway" and pod["automountServiceAccountToken"] is True


def test_service_routing_renders_no_rbac_and_no_token() -> None:
    objects = rendered(cascade_spec(routing={"policy": "service"}))
    assert not {"Role", "RoleBinding", "ServiceAccount"} & set(objects)
    assert objects["Deployment"]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert json.loads(objects["ConfigMap"]["data"]["gateway.json"])["tiers"][0]["routing"] is None


def test_an_existing_service_account_is_bound_rather_than_a_new_one_made() -> None:
    objects = rendered(cascade_spec(gateway={"serviceAccount": {"name": "mine"}}, routing={"policy": "session"}))
    assert "ServiceAccount" not in objects
    assert objects["RoleBinding"]["subjects"][0]["name"] == "mine"


def test_route_sim_prints_a_table_per_size_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from neuroscale import cli

    rows = [(t * 500, [t % 5, 100 + t % 5, 1000 + t]) for t in range(60)]
    trace = write_trace(tmp_path / "t.jsonl", rows)
    out_json = tmp_path / "r.json"
    assert cli.main(["route-sim", "--trace", str(trace), "--replicas", "2", "3", "--placements", "2",
                     "--blocks-per-replica", "20", "--json", str(out_json)]) == 0
    out, err = capsys.readouterr()
    assert out.count("| prefix |") == 2 and "| 3 replicas |" in out
    assert "20 blocks a replica" in err
    document = json.loads(out_json.read_text())
    assert {(r["policy"], r["replicas"]) for r in document["results"]} >= {("prefix", 2), ("ceiling", 3)}
    assert all(0 <= r["share_of_ceiling"] <= 1 + 1e-9 for r in document["results"])


def test_route_sim_takes_the_cache_from_the_sizing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from neuroscale import cli

    trace = write_trace(tmp_path / "t.jsonl", [(0, [1, 2]), (10, [1, 3])])
    assert cli.main(["route-sim", "--trace", str(trace), "--replicas", "2", "--placements", "1",
                     "--model", "hf://meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "4096"]) == 0
    assert "64 blocks a replica: the KV budget of hf://meta-llama/Llama-3.1-8B-Instruct" in capsys.readouterr().err


def test_route_sim_refuses_a_bad_trace_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from neuroscale import cli

    (tmp_path / "bad.jsonl").write_text('{"timestamp": 1, "input_length": 5}\n')
    assert cli.main(["route-sim", "--trace", str(tmp_path / "bad.jsonl")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("neuroscale route-sim: ") and "bad.jsonl:1" in err and len(err.splitlines()) == 1
