"""The benchmark scripts run end to end at a tiny size and write their record (no timing is asserted: speed targets
live in benchmarks/RESULTS.md). Each runs in a subprocess, as a user runs it, with its record redirected to a
temporary folder so the committed ones stay untouched."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--threads", "1"]

# script → (its arguments at a tiny size, the record's file name, the modules it needs beyond the dependencies)
CASES = {
    "conv_channels": (["--batch", "2", "--min-run-time", "0.01", "--channels", "8,8", "9,12"], "conv_channels-cpu", ()),
    "training_overhead": (["--batch", "2", "--widths", "0.375", "--min-run-time", "0.03"], "training_overhead-cpu", ()),
    "pruned_inference": (["--batches", "1", "--betas", "0.5", "--min-run-time", "0.01", "--repeats", "1"],
                         "pruned_inference-cpu", ()),
    "profile_pruned": (["--batch", "2", "--min-run-time", "0.01"], "profile_pruned-beta0.5-cpu", ()),
    "end_to_end": (["--what", "throughput", "--steps", "2", "--batch", "4"], "end_to_end-cpu", ()),
    # without --channel-multiple: the run that once crashed (a second ONNX session with no name)
    "deploy_latency": (["--masks", "shared", "--batches", "1", "--rounds", "1", "--min-run-time", "0.01"],
                       "deploy_latency-cpu", ("torch_pruning", "onnxruntime")),
}


def _run(script: str, args: list[str], results: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MDLPRUNE_BENCHMARK_RESULTS": str(results), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


@pytest.mark.parametrize("script", list(CASES))
def test_a_benchmark_script_runs_and_writes_its_record(script, tmp_path):
    args, record, needs = CASES[script]
    missing = [m for m in needs if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{script} needs {', '.join(missing)} (the deploy extra; Torch-Pruning is not a dependency)")
    before = sorted((ROOT / "benchmarks" / "results").iterdir())
    done = _run(script, args + TINY, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == [f"{record}.json"]
    saved = json.loads((tmp_path / f"{record}.json").read_text())
    assert saved["rows"] and all(r.keys() == saved["rows"][0].keys() for r in saved["rows"])  # one table
    assert saved["command"].startswith(f"python {ROOT.as_posix()}/benchmarks/{script}.py ")
    assert "torch" in saved["machine"] and f"saved {tmp_path / record}.json" in done.stdout
    assert sorted((ROOT / "benchmarks" / "results").iterdir()) == before  # the committed records untouched


@pytest.mark.parametrize("args", [["ort-conv"], ["--time-scale", "0", "ort"], ["--time-scale"]])
def test_the_profile_script_refuses_what_it_does_not_have(args, tmp_path):
    done = _run("deploy_profile", args, tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]  # after any warning torch prints on import
    parts = ", ".join(PROFILE_PARTS)  # every part has its case below
    unknown = f"deploy_profile.py: unknown part 'ort-conv'; parts: {parts} (none: all of them)"
    scale = "deploy_profile.py: --time-scale takes a positive number, e.g. --time-scale 0.01"
    expected = unknown if args == ["ort-conv"] else scale
    assert last == expected


# each part of deploy_profile.py → a line its output must hold
PROFILE_PARTS = {
    "stages": "| specialised, learned masks |",
    "depthwise": "depthwise 96 channels, 16x16, batch 64: whole",
    "mobilenet": "MobileNetV2 domain 2: specialised from the pruned model",
    "padding": "| shared | 64 | specialised | own channels |",
    "memory": "| 5 specialised models together (BatchNorm folded) |",
    "serving": "| mini, learned masks |",
    "ort": "| specialised, channels ×4 |",
    "ort-convs": "| 48 → 48 |",
}


def test_every_part_of_the_profile_script_runs(tmp_path):
    missing = [m for m in ("torch_pruning", "onnxruntime", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"deploy_profile.py needs {', '.join(missing)} (the deploy extra; Torch-Pruning: no dependency)")
    done = _run("deploy_profile", ["--time-scale", "0.01"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for part, line in PROFILE_PARTS.items():
        assert line in done.stdout, f"part {part}: no {line!r} in its output"

