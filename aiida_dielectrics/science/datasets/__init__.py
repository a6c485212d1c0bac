"""Readers of published dielectric data sets: one module per format, rows of plain Python and numpy out."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class RowError:
    """A row that was skipped, where it starts in the file and why."""

    line: int
    reason: str
