"""The benchmark scripts run end to end at a tiny size and write their record (no timing is asserted: speed targets
live in benchmarks/RESULTS.md). Each runs in a subprocess, as a user runs it, with its record and its data redirected
to temporary folders so that the committed records and the shared data cache stay untouched."""

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TINY = ["--threads", "1"]
DEPLOY = ("onnx", "onnxruntime", "onnxscript")  # the deploy extra (ONNX export and ONNX Runtime)
DEPLOY_LATENCY_MODELS = ["backbone", "pruned (all domains)", "pruned, domain models kept", "specialised", "dense limit",
                         "Torch-Pruning, same MACs", "specialised, ONNX Runtime"]  # fmt: skip


def _has(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _deploy_latency_rows(rows: list[dict], with_tp: bool | None = None) -> None:
    with_tp = _has("torch_pruning") if with_tp is None else with_tp
    expected = [m for m in DEPLOY_LATENCY_MODELS if with_tp or not m.startswith("Torch-Pruning")]
    assert [r["model"] for r in rows] == expected  # no "channels ×k" row without --channel-multiple
    by_model = {r["model"]: r for r in rows}
    assert by_model["backbone"]["latency ratio"] == 1.0 and by_model["specialised"]["MAC ratio"] < 0.75


# script → (its arguments at a tiny size, the record's file name, the modules it needs beyond the dependencies,
#           a check of the record's rows)
CASES = {
    "conv_channels": (["--batch", "2", "--min-run-time", "0.01", "--channels", "8,8", "9,12"], "conv_channels-cpu", (),
                      lambda rows: [r["in → out"] for r in rows] == ["8 → 8", "9 → 12"]),
    "training_overhead": (["--batch", "2", "--widths", "0.375", "--min-run-time", "0.03"], "training_overhead-cpu", (),
                          lambda rows: [(r["backbone"], r["method"]) for r in rows] == [("ResNet-26 w0.375", "ours")]),
    "pruned_inference": (["--batches", "1", "--betas", "0.5", "--min-run-time", "0.01", "--repeats", "1"],
                         "pruned_inference-cpu", (),
                         lambda rows: [r["dependency-aware"] for r in rows] == [True, False]
                         and all(r["MAC ratio"] < 0.75 for r in rows)),
    "profile_pruned": (["--batch", "2", "--min-run-time", "0.01"], "profile_pruned-beta0.5-cpu", (),
                       lambda rows: rows[-1]["stage"] == "all convolutions" and rows[-1]["MAC ratio"] < 0.75),
    "end_to_end": (["--what", "throughput", "--steps", "2", "--batch", "4"], "end_to_end-cpu", (),
                   lambda rows: len(rows) == 1 and rows[0]["images/s"] > 0),
    # without --channel-multiple: the run that once crashed (a second ONNX session with no name)
    "deploy_latency": (["--masks", "shared", "--batches", "1", "--rounds", "1", "--min-run-time", "0.01"],
                       "deploy_latency-cpu", DEPLOY, lambda rows: _deploy_latency_rows(rows) is None),
}


def _env(tmp: Path) -> dict[str, str]:
    """The records and the data in ``tmp``; one thread; no bytecode written into the repository; UTF-8 output."""
    return {**os.environ, "MDLPRUNE_BENCHMARK_RESULTS": str(tmp / "results"), "MDLPRUNE_DATA": str(tmp / "data"),
            "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}  # fmt: skip


def _run(script: str, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, (ROOT / "benchmarks" / f"{script}.py").as_posix(), *args], cwd=ROOT,
                          env=_env(tmp), capture_output=True, encoding="utf-8", timeout=240)  # fmt: skip


def _records() -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in RESULTS.iterdir()}


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, float):
        yield value


@pytest.mark.parametrize("script", list(CASES))
def test_a_benchmark_script_runs_and_writes_its_record(script, tmp_path):
    args, record, needs, rows_ok = CASES[script]
    if not _has(*needs):
        pytest.skip(f"{script} needs {', '.join(needs)} (the deploy extra)")
    before = _records()
    done = _run(script, args + TINY, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    saved_path = tmp_path / "results" / f"{record}.json"
    assert sorted(p.name for p in saved_path.parent.iterdir()) == [saved_path.name]
    saved = json.loads(saved_path.read_text())
    rows = saved["rows"]
    assert rows and all(r.keys() == rows[0].keys() for r in rows)  # one table
    assert all(math.isfinite(x) and x >= 0 for x in _numbers({"rows": dict(enumerate(rows))}))
    assert rows_ok(rows), rows
    assert saved["command"] == "python " + " ".join([(ROOT / "benchmarks" / f"{script}.py").as_posix(), *args, *TINY])
    assert saved["machine"]["torch"] == torch.__version__ and saved["machine"]["device"] == "cpu"
    assert f"saved {saved_path}" in done.stdout
    assert _records() == before  # the committed records untouched


# each part of deploy_profile.py → (the modules it needs beyond the dependencies, a line its output must hold)
PROFILE_PARTS = {
    "stages": (("torch_pruning",), "| specialised, learned masks |"),
    "depthwise": ((), "depthwise 96 channels, 16x16, batch 64: whole"),
    "mobilenet": ((), "MobileNetV2 domain 2: specialised from the pruned model"),
    "padding": ((), "| shared | 64 | specialised | own channels |"),
    "memory": ((), "| 5 specialised models together (BatchNorm folded) |"),
    "serving": ((), "| mini, learned masks |"),
    "ort": (("torch_pruning", *DEPLOY), "| specialised, channels ×4 |"),
    "ort-convs": (DEPLOY, "| 48 → 48 |"),
}
SCALE_REFUSED = "deploy_profile.py: --time-scale takes a positive number, e.g. --time-scale 0.01"
UNKNOWN_PART = f"deploy_profile.py: unknown part 'ort-conv'; parts: {', '.join(PROFILE_PARTS)} (none: all of them)"


@pytest.mark.parametrize(
    "args, message",
    [
        (["ort-conv"], UNKNOWN_PART),  # the parts listed must be the test's: every part has its case
        (["--time-scale", "0", "ort"], SCALE_REFUSED),
        (["--time-scale", "inf"], SCALE_REFUSED),
        (["--time-scale", "fast"], SCALE_REFUSED),
        (["--time-scale"], SCALE_REFUSED),
        (["ort", "--time-scale", "0.01"], "deploy_profile.py: --time-scale F comes first, before the parts: "
                                          "deploy_profile.py --time-scale F PART"),
    ],
)  # fmt: skip
def test_the_profile_script_refuses_what_it_does_not_have(args, message, tmp_path):
    done = _run("deploy_profile", args, tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == message  # (after any warning torch prints on import)


def test_every_part_of_the_profile_script_runs(tmp_path):
    parts = [part for part, (needs, _) in PROFILE_PARTS.items() if _has(*needs)]
    done = _run("deploy_profile", ["--time-scale", "0.01", *parts], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for part in parts:
        assert PROFILE_PARTS[part][1] in done.stdout, f"part {part}: no {PROFILE_PARTS[part][1]!r} in its output"


@pytest.mark.skipif(not _has(*DEPLOY), reason="deploy_latency.py needs the deploy extra")
def test_deploy_latency_without_torch_pruning_leaves_its_rows_out_and_says_so(tmp_path):
    script = (ROOT / "benchmarks" / "deploy_latency.py").as_posix()
    args = CASES["deploy_latency"][0] + TINY
    folder = str(ROOT / "benchmarks")
    code = (f"import runpy, sys; sys.modules['torch_pruning'] = None; sys.path.insert(0, {folder!r}); "
            f"sys.argv = {[script, *args]!r}; runpy.run_path({script!r}, run_name='__main__')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                          encoding="utf-8", timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Torch-Pruning is not installed (pip install torch-pruning): its rows are left out" in done.stderr
    _deploy_latency_rows(json.loads((tmp_path / "results" / "deploy_latency-cpu.json").read_text())["rows"], False)

