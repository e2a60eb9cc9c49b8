"""Helpers for the course notebooks. The logic of every widget lives here (and is tested); a notebook's
``interact`` wrapper only calls it."""

from .helpers import (Setup, describe_run, dual_ascent_toy, load_or_train, environment, plot_dual_ascent, plot_round_plans, random_union, setup,
                      show_source)  # fmt: skip

__all__ = ["Setup", "setup", "environment", "show_source", "load_or_train", "describe_run", "dual_ascent_toy", "plot_dual_ascent", "random_union",
           "plot_round_plans"]  # fmt: skip
