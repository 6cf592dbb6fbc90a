"""Dose shift: a model fitted at one dose classifying the same scan at other doses.

In situ the dose changes: a re-scan with a longer dwell (issue 10's "re-scan there"),
a thicker region, a later frame. The realism generator (:mod:`eelsprint.data.realism`)
redraws a series with the same truth at another dose (composition, mixing,
misalignment and background kept; only the counting noise changes). eelsprint is
fitted once per seed at each ``--fit-doses`` and classifies the series at every
``--doses``. Recorded on library pixels: accuracy, mean confidence (max probability),
ECE (15 bins) and NLL. A calibrated model's confidence follows its accuracy up and
down the dose range; the diagonal (classified at the fitted dose) is the benchmark's
usual case.

Usage::

    python evaluation/dose_shift.py                       # the study (results/dose_shift.*)
    python evaluation/dose_shift.py --merge a.json b.json  # runs of separate libraries, combined
    python evaluation/dose_shift.py --libraries simulator --seeds 0 --frames 1 --shape 8 10 \\
        --epochs 1 --gp-iterations 20 --doses 10 100 --fit-doses 10 --json /tmp/d.json \\
        --markdown /tmp/d.md                              # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eelsprint import FingerprintClassifier
from eelsprint.data.atomic import atomic_write, write_json
from eelsprint.data.realism import RealismConfig, realistic_series
from eelsprint.exceptions import DoseShiftWarning
from eelsprint.inference.metrics import accuracy, expected_calibration_error, negative_log_likelihood
from eelsprint.inference.ood import DOSE_SHIFT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import DATA, RESULTS, config, libraries

SCORES = ("accuracy", "confidence", "ece", "nll")


def score(proba: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, mean confidence, 15-bin ECE and NLL on the library pixels (labels >= 0)."""
    return {
        "accuracy": accuracy(proba, labels),
        "confidence": float(proba[labels >= 0].max(-1).mean()),
        "ece": expected_calibration_error(proba, labels),
        "nll": negative_log_likelihood(proba, labels),
    }


def run_seed(library: str, seed: int, args: Any) -> list[dict[str, Any]]:
    """Fit at each fit dose, classify at each dose: one row per (fit dose, dose)."""
    lib, kinds, normalise = libraries([library], DATA)[library]
    base = RealismConfig(n_frames=args.frames, shape=tuple(args.shape), ood_kinds=kinds, seed=seed)
    series = {d: realistic_series(lib, dataclasses.replace(base, dose=d)) for d in args.doses}
    rows = []
    for fit_dose in args.fit_doses:
        train = series.get(fit_dose) or realistic_series(lib, dataclasses.replace(base, dose=fit_dose))
        cfg = config(train.background_window, normalise, lib, args, seed)
        start = time.perf_counter()
        clf = FingerprintClassifier(config=cfg, progress=False).fit(train.spectra, lib)
        fit_s = time.perf_counter() - start
        for dose, s in series.items():
            labels = s.labels.reshape(-1)
            assert np.array_equal(labels, train.labels.reshape(-1))  # same truth, other noise
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DoseShiftWarning)  # the shift is what is measured
                ds = clf.classify(s.spectra)
            proba = ds["proba"].values.reshape(len(labels), -1)
            row = {"library": library, "seed": seed, "fit_dose": fit_dose, "dose": dose, "fit_s": fit_s}
            extra = {k: ds.attrs.get(k) for k in ("labels_from", "noise_vs_fit")}
            rows.append(row | score(proba, labels) | extra)
        print(f"{library} seed {seed} fitted at {fit_dose:g}: " + ", ".join(
            f"{r['dose']:g} {r['accuracy']:.3f}/{r['confidence']:.3f}" for r in rows[-len(series):]
        ), flush=True)  # fmt: skip
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd over seeds of each score, per (library, fit dose, dose)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["library"], r["fit_dose"], r["dose"]), []).append(r)
    out = []
    for (library, fit_dose, dose), rs in groups.items():
        row: dict[str, Any] = {"library": library, "fit_dose": fit_dose, "dose": dose, "seeds": len(rs)}
        for key in SCORES:
            v = np.array([r[key] for r in rs])
            row[key] = {"mean": float(v.mean()), "sd": float(v.std())}
        ratios = [r["noise_vs_fit"] for r in rs if r.get("noise_vs_fit") is not None]
        row["noise_vs_fit"] = float(np.median(ratios)) if ratios else None
        out.append(row)
    return out


def markdown(summary: list[dict[str, Any]], args: Any) -> str:
    """One table per library: scores by fit dose and classification dose."""
    lines = [
        "# Dose shift: fitted at one dose, classifying the same scan at others",
        "",
        "Written by `python evaluation/dose_shift.py --libraries NAME` per library (cu with `--seeds 0`: "
        "its labels come from the seed-independent spectral fallback), merged with `--merge`.",
        "",
        f"Realism series, {args.frames} frame(s) of {args.shape[0]} x {args.shape[1]} px; training "
        f"seeds {seeds(summary)}; the same truth redrawn at each dose (counting noise only). "
        "Library pixels; mean +- sd over seeds; gap = confidence - accuracy (positive: overconfident); "
        "noise vs fit: the result's `noise_vs_fit` (median over seeds), which `classify` reads from the "
        f"spectra and warns about outside [{1 / DOSE_SHIFT:g}, {DOSE_SHIFT:g}].",
    ]
    for library in dict.fromkeys(r["library"] for r in summary):
        header = "| fitted at | classified at | noise vs fit | accuracy | confidence | gap | ECE | NLL |"
        lines += ["", f"## {library}", "", header, "|---|---|---|---|---|---|---|---|"]
        for r in (r for r in summary if r["library"] == library):
            acc, conf = r["accuracy"]["mean"], r["confidence"]["mean"]
            cells = [f"{r[k]['mean']:.3f} +- {r[k]['sd']:.3f}" for k in ("accuracy", "confidence")]
            cells += [f"{conf - acc:+.3f}", f"{r['ece']['mean']:.3f}", f"{r['nll']['mean']:.3f}"]
            mark = " (fitted here)" if r["dose"] == r["fit_dose"] else ""
            ratio = "-" if r.get("noise_vs_fit") is None else f"{r['noise_vs_fit']:.2g}"
            lines.append(f"| {r['fit_dose']:g} | {r['dose']:g}{mark} | {ratio} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seeds(summary: list[dict[str, Any]]) -> str:
    """How many seeds each library's rows average."""
    count = {r["library"]: r["seeds"] for r in summary}
    return ", ".join(f"{n} ({library})" for library, n in count.items())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ("mxene", "cu", "simulator")
    parser.add_argument("--libraries", nargs="+", default=["mxene", "simulator"], choices=names)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--doses", type=float, nargs="+", default=[3.0, 10.0, 30.0, 100.0, 1000.0])
    parser.add_argument("--fit-doses", type=float, nargs="+", default=[10.0, 30.0, 100.0])
    parser.add_argument("--frames", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=2, default=[24, 32])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--gp-iterations", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: best on a shared machine)")
    parser.add_argument("--merge", type=Path, nargs="+", help="combine these runs' JSONs instead of running")
    parser.add_argument("--json", type=Path, default=RESULTS / "dose_shift.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "dose_shift.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.merge:
        parts = [json.loads(p.read_text(encoding="utf-8")) for p in args.merge]
        rows = [row for part in parts for row in part["runs"]]
        ran = parts[0]["args"] | {"libraries": list(dict.fromkeys(r["library"] for r in rows))}
        return finish(rows, argparse.Namespace(**ran | {"json": args.json, "markdown": args.markdown}))
    missing = set(args.libraries) - set(libraries(args.libraries, DATA))
    if missing:
        parser.error(f"library {', '.join(sorted(missing))} is not available (is ../shared/data there?)")
    rows = [row for library in args.libraries for seed in args.seeds for row in run_seed(library, seed, args)]
    return finish(rows, args)


def finish(rows: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    """Summarise ``rows`` and write the JSON and the markdown."""
    summary = summarise(rows)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "markdown")}
    result = {"args": settings, "summary": summary, "runs": rows}
    write_json(args.json, result, default=str)
    text = markdown(summary, args)
    with atomic_write(args.markdown) as tmp:
        tmp.write_text(text, encoding="utf-8")
    print(text)
    return result


if __name__ == "__main__":
    main()
