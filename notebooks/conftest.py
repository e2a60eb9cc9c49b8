"""Notebooks run under nbval in quick mode unless MDLPRUNE_QUICK is set otherwise (the kernels inherit it)."""

import os

os.environ.setdefault("MDLPRUNE_QUICK", "1")
