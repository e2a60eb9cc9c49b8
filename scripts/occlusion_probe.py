"""Probe (issue 15): do harder nuisances in the targets, occlusion here, make fine-tuning fall behind the adapters?

Every target image gets occluders after it is drawn (by default one or two, ``--occluders 2``): rectangles whose
sides are 25-45 % of the image's (``--sides 0.25 0.45``), at random places, each filled with one random colour or
with random noise (half and half). The source domain and the
shipped backbone are unchanged. Everything else is ``scripts/regime_probe.py``: the given training images per class,
rounds and methods, scored against the probe's own Finetune. The occluded targets are generated into their own data
folder (``--data``), so the cached default data are not touched.

    python scripts/occlusion_probe.py --data /tmp/occlusion-data d:20,g:10,t:40,s:10,f:10 60 finetune:,feature:,ba2:1.0
    python scripts/occlusion_probe.py --data /tmp/occlusion-mild --occluders 1 --sides 0.2 0.35 d:20,g:10,...
    (the default sizes and the sweep's 60 rounds)
"""

import dataclasses
import os
import sys

import numpy as np


def occluded(draw, most: int = 2, sides: tuple[float, float] = (0.25, 0.45)):
    """``draw`` followed by 1 to ``most`` occluders with sides in ``sides`` (fractions of the image's), drawn from the
    image's own random stream (deterministic)."""

    def draw_occluded(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
        img = draw(rng, label, size).copy()
        for _ in range(int(rng.integers(1, most + 1))):
            h, w = (int(size * rng.uniform(*sides)) for _ in range(2))
            y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            flat = rng.random() < 0.5
            img[y : y + h, x : x + w] = rng.integers(0, 256, 3) if flat else rng.integers(0, 256, (h, w, 3))
        return img

    return draw_occluded


def main(argv: list[str]) -> int:
    usage = ("usage: occlusion_probe.py --data FOLDER [--occluders N] [--sides LO HI] PER_CLASS ROUNDS METHODS "
             "[KEY=VALUE ...] (see regime_probe.py)")
    if argv[:1] != ["--data"] or len(argv) < 5:
        sys.exit(usage)
    os.environ["MDLPRUNE_DATA"], argv = argv[1], argv[2:]
    most, sides = 2, (0.25, 0.45)
    while argv and argv[0] in ("--occluders", "--sides"):
        if argv[0] == "--occluders":
            most, argv = int(argv[1]), argv[2:]
        else:
            sides, argv = (float(argv[1]), float(argv[2])), argv[3:]
    from mdlprune.data.mini import benchmark, domains

    for i, spec in enumerate(domains.TARGETS):  # the list benchmark.py reads, and its name → spec table
        new = dataclasses.replace(spec, draw=occluded(spec.draw, most, sides))
        domains.TARGETS[i] = benchmark.DOMAINS[spec.name] = new
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import regime_probe

    return regime_probe.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
