"""GitHub markdown tables: one writer for the study report, the bench scripts' printed tables and
their saved ``.md`` files."""
from __future__ import annotations

from typing import Callable, Sequence


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence], fmt: Callable[[object], str] = str,
                   pad: bool = False) -> list[str]:
    """The lines of a table: header, separator, one line per row, each cell ``fmt(value)``.
    ``pad`` aligns the columns on their widest cell (for a terminal; a renderer ignores it)."""
    cells = [[str(h) for h in headers]] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) if pad else 0 for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) if pad else "---" for w in widths) + "|"
    return [line(cells[0]), sep] + [line(r) for r in cells[1:]]
