"""Time `fit` on the paper's dataset size and `classify` on it (issue: fit < 5 min, classify in seconds).

Simulates 24 frames of 19 x 30 pixels (13,680 spectra of 240 channels, the size of
the paper's experiment), fits the default model once (training is minutes; one
run), then classifies all spectra in each inference mode, median of ``--repeats``.

Usage::

    python evaluation/bench_fit.py --json evaluation/results/fit-13680-cpu.json
    python evaluation/bench_fit.py --frames 2 --epochs 1 --repeats 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.atomic import write_json
from eelsprint.data.simulate import SimulatedSeries, simulate_series


def fit_parser(description: str) -> argparse.ArgumentParser:
    """``--frames``, ``--epochs`` and ``--json``: the arguments of a fit at the paper's size."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    parser.add_argument("--json", type=Path, default=None)
    return parser


def fit_problem(args: argparse.Namespace) -> tuple[SimulatedSeries, Config]:
    """The simulated series (``args.frames`` frames, seed 0) and the default config, its epochs
    (VAE and raw encoder) set to ``args.epochs`` when given."""
    series = simulate_series(n_frames=args.frames, seed=0)
    if args.epochs is None:
        return series, Config()
    return series, Config.from_dict({"train": {"epochs": args.epochs, "raw_epochs": args.epochs}})


def machine() -> str:
    """Processor, logical cores, torch version and its thread count, as results record them."""
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = fit_parser(__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    series, config = fit_problem(args)
    start = time.perf_counter()
    clf = FingerprintClassifier(config=config, progress=False).fit(series.spectra, series.library)
    fit_s = time.perf_counter() - start
    n = series.spectra.flat().shape[0]
    result = {
        "spectra": n,
        "channels": series.spectra.n_channels,
        "fit_s": round(fit_s, 1),
        "epochs": config.train.epochs,
        "machine": machine(),
    }
    for mode in ("fast", "exact"):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            clf.classify(series.spectra, mode=mode)
            times.append(time.perf_counter() - start)
        result[f"classify_{mode}_s_median"] = round(statistics.median(times), 3)
        result[f"classify_{mode}_spectra_per_s"] = round(n / statistics.median(times))
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
