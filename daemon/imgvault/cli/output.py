"""Rendering command results: aligned text tables for people, JSON for automation."""

import json
import sys
from collections.abc import Sequence
from typing import Any


def print_json(document: Any) -> None:
    json.dump(document, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; a cell may hold several lines."""
    split_rows = [[str(cell).split("\n") for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in split_rows:
        for i, lines in enumerate(row):
            widths[i] = max(widths[i], *(len(line) for line in lines))
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in split_rows:
        height = max(len(lines) for lines in row)
        for n in range(height):
            cells = [(lines[n] if n < len(lines) else "") for lines in row]
            out.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
    return "\n".join(out)


def human_size(size_bytes: int) -> str:
    """Binary units, as lsblk prints them (1.5G = 1.5 GiB)."""
    value = float(size_bytes)
    units = "BKMGTP"
    index = 0
    while value >= 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    unit = units[index]
    return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
