"""The record of an active-learning loop: rounds of suggestions, what came back, the metrics.

A small JSON file (written atomically after every change) so a loop can stop and
resume: ``suggest`` opens a round with the pixels it picked, ``update`` closes it
with what came back, and pixels of earlier rounds are excluded from later ones.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from eelsprint.data.atomic import write_json
from eelsprint.exceptions import InputDataError

__all__ = ["FORMAT", "LoopRecord"]

#: The ``format`` key of a loop record.
FORMAT = "eelsprint-active-loop"


@dataclass
class LoopRecord:
    """Rounds of one loop; each a dict with ``round``, ``strategy``, ``result``, ``encoder_id``,
    ``pixels`` (navigation column -> indices), and after ``update`` ``returned`` and ``metrics``."""

    path: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> LoopRecord:
        """The record at ``path``; an empty one when the file does not exist yet.

        Raises
        ------
        InputDataError
            The file exists but is not a loop record.
        """
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as err:
            raise InputDataError(f"{path}: not a readable loop record ({str(err).splitlines()[0]})") from None
        rounds = data.get("rounds") if isinstance(data, dict) else None
        if not isinstance(rounds, list) or data.get("format") != FORMAT:
            raise InputDataError(f"{path}: not an eelsprint loop record (format {FORMAT!r} expected)")
        return cls(path, list(data["rounds"]))

    def save(self) -> None:
        """Write the record atomically."""
        write_json(self.path, {"format": FORMAT, "version": 1, "rounds": self.rounds}, default=float)

    def start_round(self, targets: pd.DataFrame, dims: tuple[str, ...], **info: Any) -> dict[str, Any]:
        """Open a round with the suggested ``targets`` (a ``suggest`` table); ``info``: strategy etc."""
        pixels = {d: targets[d].astype(int).tolist() for d in dims}
        entry = {"round": len(self.rounds) + 1, **info, "pixels": pixels}
        self.rounds.append(entry)
        self.save()
        return entry

    def finish_round(self, returned: dict[str, Any], metrics: dict[str, float] | None = None) -> None:
        """Record what came back for the last round (and metrics, when known)."""
        if not self.rounds:
            raise InputDataError(f"{self.path}: no round to finish; run suggest with this record first")
        self.rounds[-1]["returned"] = returned
        if metrics is not None:
            self.rounds[-1]["metrics"] = metrics
        self.save()

    def acquired(self, dims: tuple[str, ...]) -> pd.DataFrame:
        """Every pixel suggested in a round so far (navigation columns), for ``suggest``'s exclusion."""
        tables = [pd.DataFrame(r["pixels"]) for r in self.rounds if set(dims) <= set(r.get("pixels", {}))]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame({d: [] for d in dims})
