"""Fit time with ``nn.Dropout`` against :class:`~eelsprint.models.dropout.BitDropout`, same run.

Fits the default model on the paper's dataset size (24 simulated frames, 13,680 spectra) three
times in one process: ``nn.Dropout``, ``BitDropout``, ``nn.Dropout`` again (the second baseline
shows the machine's drift). Only the encoders' and decoder's dropout class differs.

Usage::

    python evaluation/dropout_ab.py --json evaluation/results/dropout-ab-cpu-2core.json
    python evaluation/dropout_ab.py --frames 1 --epochs 1   # smoke test
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

import eelsprint.models.vae as vae_module
from eelsprint import FingerprintClassifier
from eelsprint.data.atomic import write_json
from eelsprint.models.dropout import BitDropout

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit import fit_parser, fit_problem, machine

RUNS = (("nn.Dropout", torch.nn.Dropout), ("BitDropout", BitDropout), ("nn.Dropout again", torch.nn.Dropout))


def main(argv: list[str] | None = None) -> dict:
    args = fit_parser(__doc__.splitlines()[0]).parse_args(argv)
    series, config = fit_problem(args)
    fit_s = {}
    try:
        for name, dropout in RUNS:
            vae_module.BitDropout = dropout  # type: ignore[misc]  # the class the layers are built with
            start = time.perf_counter()
            FingerprintClassifier(config=config, progress=False).fit(series.spectra, series.library)
            fit_s[name] = round(time.perf_counter() - start, 1)
            print(f"{name}: fit {fit_s[name]} s", flush=True)
    finally:
        vae_module.BitDropout = BitDropout  # type: ignore[misc]
    baseline = (fit_s["nn.Dropout"] + fit_s["nn.Dropout again"]) / 2
    result = {
        "spectra": series.spectra.flat().shape[0],
        "fit_s": fit_s,
        "speedup_vs_mean_baseline": round(baseline / fit_s["BitDropout"], 2),
        "machine": machine(),
    }
    print(f"BitDropout: {result['speedup_vs_mean_baseline']}x faster than nn.Dropout (mean of the two)")
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
