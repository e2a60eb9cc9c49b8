"""Regenerate the documents' sweep results from the committed ``docs/results/mini-sweep.json``.

``mdlprune sweep`` writes ``OUT/mini-sweep.json`` (one row per run). Copied to ``docs/results/``, it is the one
source of every sweep number the documents show; this command rewrites them from it::

    python -m mdlprune.experiments.sweep_report docs/results/mini-sweep.json

It replaces the blocks between ``<!-- sweep:NAME -->`` and ``<!-- /sweep:NAME -->`` in ``docs/RESULTS.md``
(``table``, ``spread``, ``goals``) and ``README.md`` (``headline``), and draws ``docs/images/pareto-mini.png``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from ..training.methods import METHODS
from .evaluate import MethodResult
from .plots import pareto_plot
from .report import Table

__all__ = ["load_sweep", "sweep_table", "spread_table", "goals_table", "headline", "main"]


def load_sweep(path: str | Path) -> tuple[dict, list[dict]]:
    """``(metadata, rows)`` of a ``mini-sweep.json``."""
    record = json.loads(Path(path).read_text())
    rows = record.pop("rows")
    return record, rows


def _label(row: dict) -> str:
    return MethodResult(row["method"], row["beta"], {}, 0.0, 0.0).label


def _first_seed(rows: Sequence[dict]) -> list[dict]:
    first = min(r["seed"] for r in rows)
    return [r for r in rows if r["seed"] == first or r["beta"] is None]


def _find(rows: Sequence[dict], method: str, beta: float | None = None) -> dict | None:
    return next((r for r in _first_seed(rows) if r["method"] == method and r["beta"] == beta), None)


def sweep_table(rows: Sequence[dict]) -> Table:
    """One line per run of the first seed: cost, accuracy per domain, S, S_O, S_P, budget and union."""
    domains = list(rows[0]["accuracies"])
    t = Table(["method", "MACs", "Params", *domains, "mean", "S", "S_O", "S_P", "max θ̄_d", "union"], digits=3)
    for r in _first_seed(rows):
        t.add(_label(r), f"{r['macs']:.3f}", f"{r['params']:.3f}", *(f"{r['accuracies'][d]:.1f}" for d in domains),
              f"{r['mean_accuracy']:.1f}", f"{r['s_score']:.0f}", f"{r['s_o']:.0f}", f"{r['s_p']:.0f}",
              "" if r["max_theta_bar"] is None else f"{r['max_theta_bar']:.3f}",
              "" if r.get("union") is None else f"{r['union']:.3f}")  # fmt: skip
    return t


def spread_table(rows: Sequence[dict]) -> Table:
    """Mean ± standard deviation over seeds, for every (method, β) run with more than one seed."""
    domains = list(rows[0]["accuracies"])
    t = Table(["method", "seeds", "mean accuracy", "S", *domains, "largest gap to its seed-mean"])
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["beta"]), []).append(r)

    def ms(values):
        return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

    for key, rs in groups.items():
        if len(rs) < 2:
            continue
        gap = max(abs(r["accuracies"][d] - statistics.mean(x["accuracies"][d] for x in rs)) for r in rs for d in domains)
        t.add(_label(rs[0]), " ".join(str(r["seed"]) for r in rs), ms([r["mean_accuracy"] for r in rs]),
              ms([r["s_score"] for r in rs]), *(ms([r["accuracies"][d] for r in rs]) for d in domains), f"{gap:.1f}")  # fmt: skip
    return t


def goals_table(rows: Sequence[dict]) -> Table:
    """The benchmark's targets (the Visual Decathlon's regime), each with what the sweep measured."""
    t = Table(["target", "measured", "holds"])
    ft, feat = _find(rows, "finetune"), _find(rows, "feature")
    if ft is None or not METHODS[ft["method"]].s_score_baseline:
        raise ValueError("the sweep has no Finetune row: its S-scores have no baseline")
    errors = {d: 100 - a for d, a in ft["accuracies"].items()}
    in_range = [d for d, e in errors.items() if 5 <= e <= 45]
    t.add("Finetune's test error in 5-45 % on ≥ 4 domains",
          ", ".join(f"{d} {e:.1f}" for d, e in errors.items()), f"{len(in_range)} of {len(errors)}: {'yes' if len(in_range) >= 4 else 'no'}")
    s_ft = ft["s_score"]
    if feat:
        t.add("S(Feature) ≤ 0.5 × S(Finetune)", f"{feat['s_score']:.0f} vs {s_ft:.0f}", "yes" if feat["s_score"] <= 0.5 * s_ft else "no")
    ba2_1 = _find(rows, "ba2", 1.0)
    if ba2_1:
        v = ba2_1["s_score"]
        t.add("S(BA², β = 1) ≥ S(Finetune) (target), ≥ 0.9 × (accepted)", f"{v:.0f} = {v / s_ft:.2f} × {s_ft:.0f}",
              "target" if v >= s_ft else "accepted" if v >= 0.9 * s_ft else "no")
    ours5 = _find(rows, "ours", 0.5)
    if ours5:
        ok = ours5["s_score"] >= 0.8 * s_ft and ours5["params"] <= 0.6 and ours5["macs"] <= 0.55
        t.add("Ours β = 0.5: S ≥ 0.8 × S(Finetune), Params ≤ 0.6, MACs ≤ 0.55",
              f"S {ours5['s_score']:.0f} ({ours5['s_score'] / s_ft:.2f} ×), Params {ours5['params']:.3f}, MACs {ours5['macs']:.3f}",
              "yes" if ok else "no")  # fmt: skip
    ours25 = _find(rows, "ours", 0.25)
    if ours25 and feat:
        ok = ours25["params"] <= 0.35 and ours25["s_score"] > feat["s_score"]
        t.add("Ours β = 0.25: Params ≤ 0.35, S > S(Feature)",
              f"Params {ours25['params']:.3f}, S {ours25['s_score']:.0f} vs {feat['s_score']:.0f}", "yes" if ok else "no")
    ba2 = [r for r in (_find(rows, "ba2", b) for b in (1.0, 0.75, 0.5)) if r is not None]
    if ba2:
        low = min(r["params"] for r in ba2)
        t.add("BA²'s Params ≥ 0.85 at β ≥ 0.5 (claim a)", ", ".join(f"β={r['beta']:g}: {r['params']:.3f}" for r in ba2),
              "yes" if low >= 0.85 else "no")
    over = [(r, r["max_theta_bar"] - r["beta"]) for r in rows if r["max_theta_bar"] is not None]
    if over:
        worst, gap = max(over, key=lambda x: x[1])
        t.add("every domain meets its budget: θ̄_d ≤ β + 0.02", f"largest θ̄_d − β: {gap:+.3f} ({_label(worst)}, seed {worst['seed']})",
              "yes" if gap <= 0.02 else "no")
    return t


def headline(meta: dict, rows: Sequence[dict]) -> str:
    """The README's results paragraph."""
    ft, feat, ba2, ours = _find(rows, "finetune"), _find(rows, "feature"), _find(rows, "ba2", 0.5), _find(rows, "ours", 0.5)
    minutes = meta["seconds"] / 60
    return (
        f"On the mini-decathlon at β = 0.5 (`{meta['command']}`, {meta['machine']}, {minutes:.0f} min for the whole "
        f"sweep), every domain meets its budget (θ̄_d ≤ {ours['max_theta_bar']:.3f} with Ours), and one pruned Ours "
        f"model serves the five domains with **{ours['params']:.2f} × the parameters** of the single-domain backbone, "
        f"each domain needing {ours['macs']:.2f} × the backbone's MACs on average (`needed_macs`; BA²: {ba2['params']:.2f} × and "
        f"{ba2['macs']:.2f} ×), at S = {ours['s_score']:.0f} "
        f"and {ours['mean_accuracy']:.1f} % mean accuracy (BA² S = {ba2['s_score']:.0f}, {ba2['mean_accuracy']:.1f} %; "
        f"Feature S = {feat['s_score']:.0f}, {feat['mean_accuracy']:.1f} %; five fine-tuned backbones S = "
        f"{ft['s_score']:.0f}, {ft['mean_accuracy']:.1f} %)."
    )


def _replace_block(path: Path, name: str, text: str) -> None:
    doc = path.read_text()
    pattern = re.compile(rf"(<!-- sweep:{name} -->\n)(?:.*?\n)?(<!-- /sweep:{name} -->)", re.S)
    if not pattern.search(doc):
        raise ValueError(f"{path} has no <!-- sweep:{name} --> ... <!-- /sweep:{name} --> block")
    path.write_text(pattern.sub(lambda m: m.group(1) + text.rstrip("\n") + "\n" + m.group(2), doc))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mdlprune.experiments.sweep_report", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="a mini-sweep.json (the committed one: docs/results/mini-sweep.json)")
    p.add_argument("--root", type=Path, default=Path("."), help="the repository (default: the current folder)")
    args = p.parse_args(argv)
    meta, rows = load_sweep(args.sweep)
    results = [MethodResult.from_row(r) for r in rows]
    _replace_block(args.root / "docs" / "RESULTS.md", "table", sweep_table(rows).to_markdown())
    spread = spread_table(rows)
    _replace_block(args.root / "docs" / "RESULTS.md", "spread", spread.to_markdown() if spread.rows else "(one seed only)")
    _replace_block(args.root / "docs" / "RESULTS.md", "goals", goals_table(rows).to_markdown())
    _replace_block(args.root / "README.md", "headline", headline(meta, rows))
    fig = pareto_plot(results, meta["baseline"])
    fig.savefig(args.root / "docs" / "images" / "pareto-mini.png", dpi=90)
    print(f"rewrote docs/RESULTS.md (table, spread, goals), README.md (headline), docs/images/pareto-mini.png from {args.sweep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
