"""Plain result tables that print as Markdown (no pandas needed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Table", "format_bits"]


def _cell(v: Any, digits: int) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


@dataclass
class Table:
    """Rows of values under named columns; ``str(table)`` is a Markdown table.

    >>> t = Table(["method", "S"], [["BA²", 3199.0]], digits=0)
    >>> print(t)
    | method | S |
    |---|---|
    | BA² | 3199 |
    """

    columns: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    digits: int = 3
    title: str | None = None

    def add(self, *values: Any) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"a row of this table has {len(self.columns)} values, got {len(values)}")
        self.rows.append(list(values))

    def to_markdown(self) -> str:
        lines = [f"**{self.title}**", ""] if self.title else []
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(_cell(v, self.digits) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def to_json(self) -> str:
        return json.dumps({"title": self.title, "rows": self.to_dicts()}, indent=2)

    def __str__(self) -> str:
        return self.to_markdown()

    def _repr_markdown_(self) -> str:  # Jupyter renders it as a table
        return self.to_markdown()


def format_bits(bits: float) -> str:
    """Bits as a human-readable size: ``format_bits(8 * 2**20) == '1.00 MiB'``."""
    size = bits / 8
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.2f} {unit}" if unit != "B" else f"{size:.0f} B"
        size /= 1024
    raise AssertionError("unreachable")
