"""Covers the Neuron instance catalog: every NEURON.md row and its figures, the per-core derived properties,
the allowed tensor-parallel degrees (family list, core limit, trn1.32xlarge's schedulable device counts),
`get_instance` errors, and that `neuroscale.sizing` stays pure (no kopf/boto3/kubernetes/aiohttp import)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from neuroscale.sizing import CATALOG, FAMILY_TP, SCHEDULABLE_DEVICE_COUNTS, get_instance

# (chips, NeuronCores, HBM GiB, vCPU, host GiB, $/h) straight from NEURON.md "Instance catalog".
NEURON_MD_ROWS = {
    "inf2.xlarge": (1, 2, 32, 4, 16, 0.7582),
    "inf2.8xlarge": (1, 2, 32, 32, 128, 1.96786),
    "inf2.24xlarge": (6, 12, 192, 96, 384, 6.49063),
    "inf2.48xlarge": (12, 24, 384, 192, 768, 12.98127),
    "trn1.2xlarge": (1, 2, 32, 8, 32, 1.34375),
    "trn1.32xlarge": (16, 32, 512, 128, 512, 21.50),
    "trn1n.32xlarge": (16, 32, 512, 128, 512, 24.78),
    "trn2.48xlarge": (16, 64, 1536, 192, 2048, None),
}


def test_catalog_has_exactly_the_reference_rows() -> None:
    assert set(CATALOG) == set(NEURON_MD_ROWS)


@pytest.mark.parametrize("name", sorted(NEURON_MD_ROWS))
def test_row_matches_reference(name: str) -> None:
    inst = CATALOG[name]
    assert (inst.devices, inst.neuron_cores, inst.hbm_gib, inst.vcpu, inst.memory_gib, inst.price_per_hour) == (
        NEURON_MD_ROWS[name]
    )
    assert inst.name == name
    assert name.startswith(inst.family + ".")


@pytest.mark.parametrize(
    ("name", "per_core", "cores_per_device", "accelerator"),
    [
        ("inf2.48xlarge", 16.0, 2, "inferentia2"),
        ("trn1.32xlarge", 16.0, 2, "trainium"),
        ("trn1n.32xlarge", 16.0, 2, "trainium"),
        ("trn2.48xlarge", 24.0, 4, "trainium2"),
    ],
)
def test_per_core_figures(name: str, per_core: float, cores_per_device: int, accelerator: str) -> None:
    inst = CATALOG[name]
    assert inst.hbm_per_core_gib == per_core
    assert inst.cores_per_device == cores_per_device
    assert inst.accelerator == accelerator


def test_bandwidth_is_per_device_from_the_hardware_docs() -> None:
    assert {i.hbm_bandwidth_gbps for i in CATALOG.values() if i.family != "trn2"} == {820.0}
    assert CATALOG["trn2.48xlarge"].hbm_bandwidth_gbps == 2900.0


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("inf2.xlarge", (1, 2)),
        ("inf2.24xlarge", (1, 2, 4, 8)),
        ("inf2.48xlarge", (1, 2, 4, 8, 24)),
        ("trn1.2xlarge", (1, 2)),
        ("trn1.32xlarge", (1, 2, 8, 16, 32)),
        ("trn2.48xlarge", (1, 2, 4, 8, 16, 32, 64)),
    ],
)
def test_allowed_tp(name: str, allowed: tuple[int, ...]) -> None:
    assert CATALOG[name].allowed_tp == allowed


@pytest.mark.parametrize("name", sorted(NEURON_MD_ROWS))
def test_every_allowed_tp_is_schedulable(name: str) -> None:
    inst = CATALOG[name]
    schedulable = SCHEDULABLE_DEVICE_COUNTS.get(name, tuple(range(1, inst.devices + 1)))
    for tp in inst.allowed_tp:
        assert tp in FAMILY_TP[inst.family]
        assert tp <= inst.neuron_cores
        assert inst.devices_for(tp) in schedulable


def test_trn1_device_counts_follow_the_neuron_scheduler() -> None:
    inst = CATALOG["trn1.32xlarge"]
    assert [inst.devices_for(tp) for tp in inst.allowed_tp] == [1, 1, 4, 8, 16]
    assert SCHEDULABLE_DEVICE_COUNTS["trn1.32xlarge"] == (1, 4, 8, 16)


def test_family_tp_is_plain_data_for_crd_generation() -> None:
    assert dict(FAMILY_TP) == {
        "inf2": (1, 2, 4, 8, 24),
        "trn1": (1, 2, 8, 16, 32),
        "trn1n": (1, 2, 8, 16, 32),
        "trn2": (1, 2, 4, 8, 16, 32, 64),
    }
    with pytest.raises(TypeError):
        FAMILY_TP["inf2"] = (1,)  # type: ignore[index]


def test_get_instance_unknown_lists_valid_names() -> None:
    assert get_instance("inf2.xlarge") is CATALOG["inf2.xlarge"]
    with pytest.raises(ValueError, match="inf2.48xlarge") as err:
        get_instance("p5.48xlarge")
    assert "p5.48xlarge" in str(err.value)
    assert all(name in str(err.value) for name in CATALOG)


def test_sizing_imports_no_io_library() -> None:
    code = (
        "import sys, neuroscale.sizing, neuroscale.sizing.cli; "
        "print(sorted(m for m in ('kopf', 'boto3', 'botocore', 'kubernetes', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
