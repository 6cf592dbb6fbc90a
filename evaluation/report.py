"""Write an evaluation report of a trained model (a thin wrapper of ``eelsprint report``).

Without ``--data`` it simulates a fresh heating series with ground truth (a seed
other than the training seed 0) and reports against the truth; with ``--data``
it reports on the given files (and ``--truth`` when you have labels).

Usage::

    python evaluation/report.py --model models/default --out evaluation/results/report
    python evaluation/report.py --model models/default --data scan.hspy --out report-scan
    python evaluation/report.py --model M --out R --frames 1 --shape 8 10 --draws 10   # smoke test
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from eelsprint.data.atomic import atomic_write
from eelsprint.data.simulate import simulate_series
from eelsprint.report.build import ReportConfig, run_report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--out", type=Path, default=Path("evaluation/results/report"))
    parser.add_argument(
        "--data", type=Path, nargs="*", default=None, help="spectrum files (default: simulate)"
    )
    parser.add_argument("--truth", type=Path, default=None, help="labels .npz for --data")
    parser.add_argument("--frames", type=int, default=6, help="simulated frames")
    parser.add_argument("--shape", type=int, nargs=2, default=(19, 30), help="simulated scan shape")
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (the model trained on 0)")
    parser.add_argument("--draws", type=int, default=100, help="posterior draws per pixel")
    parser.add_argument("--tsne-points", type=int, default=1000)
    args = parser.parse_args(argv)
    config = ReportConfig(n_draws=args.draws, tsne_points=args.tsne_points, seed=args.seed)
    if args.data:
        metrics = run_report(args.data, args.model, args.out, args.truth, config=config)
    else:
        series = simulate_series(args.frames, tuple(args.shape), seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            data, truth = Path(tmp) / f"simulated-seed{args.seed}.npz", Path(tmp) / "truth.npz"
            for path, arrays in (
                (data, {"x": series.spectra.data, "energy": series.spectra.energy}),
                (truth, {"label": series.labels}),
            ):
                with atomic_write(path) as part, open(part, "wb") as fh:
                    np.savez_compressed(fh, **arrays)
            metrics = run_report([data], args.model, args.out, truth, config=config)
    summary = {k: metrics[k] for k in ("accuracy", "nll", "ece", "ood_auroc", "error_auroc")}
    print(
        f"wrote {args.out}/report.html; "
        + ", ".join(f"{k} {v:.3f}" for k, v in summary.items() if v is not None)
    )
    return metrics


if __name__ == "__main__":
    main()
