"""The report's active-learning section: where to look next, and how a loop went.

Acquisition maps show each strategy's score over the scan (:mod:`eelsprint.active.acquisition`);
a table lists the next pixels BALD would re-acquire. With a loop record
(:class:`eelsprint.active.loop.LoopRecord`), the rounds are tabulated and, where rounds
carry metrics (a replay against known truth), plotted against the pixels re-acquired.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from eelsprint.active.acquisition import acquisition_scores
from eelsprint.active.suggest import spread_batch
from eelsprint.report import figures
from eelsprint.report.html import Image, Section, Table

if TYPE_CHECKING:
    from eelsprint.report.inputs import ReportData

__all__ = ["SHOWN", "active_section", "loop_curves"]

#: Strategies whose maps the report shows (random has nothing to show).
SHOWN = ("bald", "entropy", "margin", "ood")
MAX_FRAMES = 4
TOP = 10


def loop_curves(rounds: Sequence[dict[str, Any]]) -> bytes | None:
    """Each metric of the rounds against the pixels re-acquired so far; ``None`` without metrics."""
    points = [(r["metrics"], r) for r in rounds if isinstance(r.get("metrics"), dict)]
    if not points:
        return None
    n = np.cumsum([_n_pixels(r) for _, r in points])
    keys = [k for k in ("accuracy", "nll", "ece") if all(k in m for m, _ in points)]
    fig = Figure(figsize=(3.6 * max(len(keys), 1), 3.0), layout="constrained")
    axes = fig.subplots(1, max(len(keys), 1), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=False):
        ax.plot(n, [m[key] for m, _ in points], marker="o")
        ax.set_xlabel("pixels re-acquired")
        ax.set_ylabel(key)
    fig.suptitle("active-learning loop")
    return figures.png(fig)


def active_section(d: ReportData, ds: Any, rounds: Sequence[dict[str, Any]] | None) -> Section:
    """Acquisition maps, the next pixels by BALD, and the loop's rounds when given."""
    section = Section("Active learning")
    shown = d.frames[:MAX_FRAMES]
    rows = {name: [f.map(acquisition_scores(ds, name)) for f in shown] for name in SHOWN}
    caption = (
        "Where each acquisition function would look next: BALD (mutual information, the epistemic "
        "term), total entropy, least margin and the out-of-library score"
        + (f"; first {MAX_FRAMES} frames." if len(d.frames) > MAX_FRAMES else ".")
    )
    section.blocks.append(Image(figures.value_maps(rows, [f.name for f in shown], "acquisition"), caption))
    scores = acquisition_scores(ds, "bald")
    picked = spread_batch(scores, min(TOP, scores.size), 0.0)
    frame_of = np.searchsorted(d.starts, picked, side="right") - 1
    label, confidence = ds["label"].values, ds["confidence"].values
    rows_next = [
        [d.names[f], int(i - d.starts[f]), float(scores[i]), d.classes[int(label[i])], float(confidence[i])]
        for i, f in zip(picked, frame_of, strict=True)
    ]
    header = ["frame", "pixel (in frame)", "BALD (nat)", "label", "probability"]
    note = "The next pixels to re-acquire by BALD (`eelsprint suggest` also spreads them out)."
    section.blocks.append(Table(header, rows_next, note))
    if rounds:
        header = ["round", "strategy", "pixels", "labelled", "re-acquired used", "new classes"]
        section.blocks.append(Table(header, [_round_row(r) for r in rounds], "Rounds of the loop record."))
        curves = loop_curves(rounds)
        if curves is not None:
            section.blocks.append(Image(curves, "Metrics recorded by the loop after each round."))
    return section


def _n_pixels(entry: dict[str, Any]) -> int:
    """Pixels suggested in one round of a loop record."""
    columns = list(entry.get("pixels", {}).values())
    return len(columns[0]) if columns else 0


def _round_row(entry: dict[str, Any]) -> list[object]:
    returned = entry.get("returned", {})
    added = ", ".join(returned.get("new_classes", [])) or None
    return [entry.get("round"), entry.get("strategy"), _n_pixels(entry), returned.get("labelled"),
            returned.get("reacquired_used"), added]  # fmt: skip
