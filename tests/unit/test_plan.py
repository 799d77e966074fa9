"""`plan`: rendering manifests offline, and the `neuroscale plan` command.

Covers: ModelDeployments render with a sizing summary; the document's namespace wins over the default; autoscaled
ones start at minReplicas; non-neuroscale kinds are passed over with a note; neuroscale kinds without an offline
renderer are still validated; unknown neuroscale kinds are errors; invalid documents (not a mapping, no kind, no name, bad spec, model that fits nowhere, name too long) get a
one-line error and never a traceback; `kind: List` is opened; every example in examples/ plans cleanly and its
ModelDeployments validate against the generated CRD schema; the CLI reads files, directories and stdin, writes YAML or
a JSON List, reports errors on stderr with exit status 2 (as every subcommand does for input errors; the hostile inputs
are in tests/unit/test_cli_inputs.py), and has --help with an example.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from neuroscale import cli, yamlio
from neuroscale.api.crds import crd
from neuroscale.api.registry import MODEL_DEPLOYMENT
from neuroscale.render.plan import plan_documents
from tests.support.factories import make_model_deployment

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def model_doc(name: str = "llama", namespace: str | None = None, **spec: Any) -> dict:
    doc = make_model_deployment(name=name, **spec)
    doc["metadata"] = {"name": name, **({"namespace": namespace} if namespace else {})}
    return doc


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    """`neuroscale plan ARGV` through the entry point, in process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    saved, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["plan", *argv])
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def test_model_deployment_renders_with_summary_in_default_namespace():
    result = plan_documents([model_doc()], default_namespace="models")
    assert result.ok
    assert [o["kind"] for o in result.objects] == ["Deployment", "Service", "PodDisruptionBudget"]
    assert {o["metadata"]["namespace"] for o in result.objects} == {"models"}
    (summary,) = result.summaries
    assert summary.startswith("ModelDeployment models/llama: vllm on ")
    assert "http://llama.models.svc.cluster.local:8000/v1" in summary


def test_document_namespace_wins_and_autoscaled_models_start_at_min_replicas():
    doc = model_doc(namespace="team-a", autoscaling={"minReplicas": 2, "maxReplicas": 5})
    result = plan_documents([doc], default_namespace="models")
    deployment = next(o for o in result.objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "team-a"
    assert deployment["spec"]["replicas"] == 2


def test_other_kinds_are_passed_over_with_a_note_and_every_neuroscale_kind_is_rendered_or_rejected():
    docs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
        {"apiVersion": "neuroscale.io/v1alpha1", "kind": "InferenceCascade", "metadata": {"name": "c"}},
        {"apiVersion": "neuroscale.io/v1alpha1", "kind": "CacheTier", "metadata": {"name": "t"}, "spec": {}},
        model_doc(),
    ]
    result = plan_documents(docs)
    assert result.notes == ["ConfigMap cm: not a neuroscale resource (v1); passed over"]
    rendered = sorted((o["kind"], o["metadata"]["name"]) for o in result.objects)
    assert rendered == sorted([("Deployment", "t-redis"), ("Service", "t-redis"), ("NetworkPolicy", "t-redis"),
                               ("Deployment", "llama"),
                               ("Service", "llama"), ("PodDisruptionBudget", "llama")])
    (error,) = result.errors
    assert error.startswith("InferenceCascade default/c: spec.")


def test_unknown_neuroscale_kinds_are_errors():
    result = plan_documents([{"apiVersion": "neuroscale.io/v1alpha1", "kind": "Model", "metadata": {"name": "m"}}])
    assert result.errors == ["Model default/m: unknown neuroscale kind 'Model'; known kinds: ModelDeployment, "
                             "InferenceCascade, CacheTier"]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (["a", "list"], "expected a Kubernetes object (a mapping), got list"),
        ({"metadata": {"name": "x"}}, "missing apiVersion or kind"),
        ({"apiVersion": "neuroscale.io/v1alpha1", "kind": "ModelDeployment", "spec": {}}, "metadata.name is missing"),
        (model_doc(model={"source": "ftp://example/model"}), "spec.model.source: String should match pattern"),
        (model_doc(engine={"name": "triton"}), "spec.engine.name: Input should be 'vllm', 'tgi' or 'djl-lmi'"),
        (model_doc(batching={"maxNumSeqs": 0}), "spec.batching.maxNumSeqs: Input should be greater than or equal"),
        (model_doc(model={"source": "hf://meta-llama/Llama-3.1-405B-Instruct"},
                   accelerator={"instanceType": "inf2.xlarge"}), "Llama-3.1-405B in bf16 needs"),
        (model_doc(name="x" * 64), "at most 63"),
        (model_doc(model={"source": "hf://acme/mystery-model"}), "cannot tell the size"),
    ],
)
def test_invalid_documents_get_a_clear_one_line_error(doc: Any, message: str):
    result = plan_documents([doc])
    assert not result.ok
    (error,) = result.errors
    assert message in error
    assert "Traceback" not in error and "\n" not in error
    assert result.objects == []


def test_one_bad_document_does_not_hide_the_good_ones():
    result = plan_documents([model_doc(name="bad", model={"source": "nope"}), model_doc(name="good")])
    assert len(result.errors) == 1
    assert {o["metadata"]["name"] for o in result.objects} == {"good"}


def test_kind_list_is_opened():
    result = plan_documents([{"apiVersion": "v1", "kind": "List", "items": [model_doc("a"), model_doc("b")]}])
    assert {o["metadata"]["name"] for o in result.objects} == {"a", "b"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_plans_without_errors(example: Path):
    docs = list(yamlio.load_all(example.read_text()))
    result = plan_documents(docs)
    assert result.ok, result.errors
    neuroscale_docs = [d for d in docs if d["apiVersion"].startswith("neuroscale.io/")]
    assert len(result.summaries) == len(neuroscale_docs)
    assert len(result.notes) == len(docs) - len(neuroscale_docs)
    assert example.read_text().startswith("#"), "examples start with a comment header explaining them"


def test_example_model_deployments_match_the_crd_schema():
    schema = crd(MODEL_DEPLOYMENT)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    # OpenAPI v3.0 schemas use draft-4 keywords (a boolean exclusiveMinimum).
    validator = jsonschema.Draft4Validator(schema)
    checked = 0
    for example in EXAMPLES:
        for doc in yamlio.load_all(example.read_text()):
            if doc["kind"] == "ModelDeployment":
                validator.validate(doc)
                checked += 1
    assert checked >= 2
    assert not validator.is_valid(model_doc(model={"source": "hf://a/b", "maxModelLen": 1}))


def test_cli_plans_a_directory_as_yaml(tmp_path: Path):
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "a.yaml").write_text(yamlio.dump(model_doc("a")))
    (tmp_path / "b.yml").write_text(yamlio.dump(model_doc("b")))
    (tmp_path / "README.md").write_text("not a manifest")
    code, out, err = run_cli("-f", str(tmp_path), "-n", "models")
    assert code == 0
    objects = list(yamlio.load_all(out))
    assert [(o["kind"], o["metadata"]["name"]) for o in objects if o["kind"] == "Deployment"] == [
        ("Deployment", "b"), ("Deployment", "a")]
    assert err.count("ModelDeployment models/") == 2


def test_cli_reads_stdin_and_writes_a_json_list():
    code, out, _ = run_cli("-f", "-", "--output", "json", stdin=yamlio.dump(model_doc()))
    assert code == 0
    listing = json.loads(out)
    assert listing["kind"] == "List"
    assert [o["kind"] for o in listing["items"]] == ["Deployment", "Service", "PodDisruptionBudget"]


def test_cli_errors_go_to_stderr_with_exit_2(tmp_path: Path):
    code, out, err = run_cli("-f", str(tmp_path / "missing.yaml"))
    assert (code, out) == (2, "")
    assert err == f"neuroscale plan: {tmp_path / 'missing.yaml'}: no such file or directory\n"

    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: [unclosed")
    code, _, err = run_cli("-f", str(broken))
    assert code == 2 and "broken.yaml: not valid YAML or JSON: line 1, column 16: expected ',' or ']'" in err
    assert len(err.splitlines()) == 1

    code, out, err = run_cli("-f", "-", stdin=yamlio.dump_all([model_doc("ok"), model_doc("bad", model={"source": "x"})]))
    assert code == 2
    assert "error: ModelDeployment default/bad: spec.model.source" in err
    assert "name: ok" in out


def test_cli_help_shows_an_example_and_plan_runs_as_a_subcommand():
    proc = subprocess.run([sys.executable, "-m", "neuroscale", "plan", "--help"], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert "neuroscale plan -f examples/llama-3.1-8b-inf2.yaml" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "neuroscale", "plan", "-f", str(EXAMPLES[0].parent)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "kind: Deployment" in proc.stdout
