"""Probe (issue 15): does the signs domain lag because the source teaches the backbone to ignore a board's symbol?

The shipped source (generator v3) has 12 "board" classes told apart by outline shape and colour scheme, with a
random letter inside as a nuisance: pretraining rewards features that ignore what is written on a board. The signs
domain's classes are mostly told apart by exactly that (eight speed limits differ only by their number). This probe
swaps the roles: the class of a board is the letter inside (12 letters, none of the signs' symbols), its shape and
colour scheme become the nuisances. Everything else is ``scripts/backbone_probe.py``: pretrain a backbone on the
changed source, then train the given methods on the default targets (unchanged) with the sweep's settings.

The changed source is generated into its own data folder (``--data``), so the cached default source is not touched.

    python scripts/boards_probe.py --data /tmp/probe-data -- --name boards-letter --per-class 600 --epochs 15 \
        --label-smoothing 0 --methods finetune:,feature:,ba2:1.0 --out runs/probe15
"""

import os
import sys

import numpy as np

BOARD_LETTERS = "ABCDEFGJKLMN"  # the signs have P, H and STOP, and numbers


def _draw_lettered_board(rng: np.random.Generator, letter: str, size: int) -> np.ndarray:
    """A source board whose class is ``letter``; its shape (disc or 3-8 sides) and colour scheme are drawn at random."""
    shape = (0, 3, 4, 5, 6, 8)[int(rng.integers(6))]
    scheme = ("green", "orange")[int(rng.integers(2))]
    return _shipped_draw_board(rng, shape, scheme, size, letter=letter)


def main(argv: list[str]) -> int:
    if "--data" not in argv or "--" not in argv:
        sys.exit("usage: boards_probe.py --data FOLDER -- BACKBONE_PROBE_ARGUMENTS")
    os.environ["MDLPRUNE_DATA"] = argv[argv.index("--data") + 1]
    from mdlprune.data.mini import source

    global _shipped_draw_board
    _shipped_draw_board = source._draw_board
    source.BOARDS = [(c,) for c in BOARD_LETTERS]  # read by draw_source on every call
    source._draw_board = _draw_lettered_board
    sys.path.insert(0, os.path.dirname(__file__))
    import backbone_probe

    backbone_probe.PROG = "python scripts/boards_probe.py " + " ".join(argv[: argv.index("--") + 1])
    return backbone_probe.main(argv[argv.index("--") + 1 :])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
