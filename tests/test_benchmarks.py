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


def test_the_profile_script_refuses_a_part_it_does_not_have(tmp_path):
    done = _run("deploy_profile", ["ort-conv"], tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]  # after any warning torch prints on import
    assert last.startswith("deploy_profile.py: unknown part 'ort-conv'; parts: stages, depthwise,")
