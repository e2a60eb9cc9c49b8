"""Notebooks run under nbval in quick mode unless MDLPRUNE_QUICK is set otherwise (the kernels inherit it)."""

import os

os.environ.setdefault("MDLPRUNE_QUICK", "1")


def pytest_collection_modifyitems(items):
    """nbval waits 5 s for the last messages of a cell that has finished; on a loaded 2-core machine they can come
    later, and the cell fails with "Timeout of 5 seconds exceeded waiting for output" (a CI run did, while tests ran
    beside it). Wait up to a minute."""
    for item in items:
        if hasattr(item, "output_timeout"):
            item.output_timeout = 60
