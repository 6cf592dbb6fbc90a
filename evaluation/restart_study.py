"""Restart study (issue 8): can a label-free score pick the better of several training seeds?

The realism benchmark's accuracy spreads over training seeds (one seed in five lags).
A fit that trained R times and kept the restart with the best label-free score would
narrow that spread, at R times the fit time. This measures, on one realism series per
library, each training seed's accuracy (true labels, used only for scoring) next to
candidate scores that need no data label:

* ``copies_nll_pure`` / ``copies_acc_pure``: NLL and accuracy of the fitted model
  (raw encoder + GP) on held-out noisy nuisance copies of the library (the data's noise
  model, the fit's nuisance; drawn from one fixed stream, the same for every seed);
* ``copies_nll_mixed``: the same with 30 % mixed copies (labelled by the dominant class);
* ``self_consistency`` and ``latent_accuracy``: the fit's own library check.

Then it simulates best-of-R selection by each score over the measured seeds (groups of R
drawn at random, 5 groups per draw, 1,000 draws) and reports the expected 5-seed range.

Usage::

    python evaluation/restart_study.py --libraries mxene simulator --seeds 0 1 2 3 4 5 6 7 8 9
    python evaluation/restart_study.py --from-json evaluation/results/restart_study.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from eelsprint import FingerprintClassifier
from eelsprint.data.atomic import atomic_write, write_json
from eelsprint.data.augment import augment_library
from eelsprint.data.realism import RealismConfig, realistic_series
from eelsprint.inference.fitting import with_estimates
from eelsprint.inference.metrics import accuracy, expected_calibration_error, negative_log_likelihood
from eelsprint.inference.ood import OODScaler, with_noise
from eelsprint.inference.uncertainty import predict_fast

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import DATA, RESULTS, config, libraries

#: The scores compared; lower is better for each (accuracies enter negated).
SCORES = {
    "copies_nll_pure": lambda r: r["copies_nll_pure"],
    "copies_nll_mixed": lambda r: r["copies_nll_mixed"],
    "copies_accuracy_pure": lambda r: -r["copies_acc_pure"],
    "self_consistency": lambda r: -r["check"]["self_consistency"],
    "latent_accuracy": lambda r: -r["check"]["latent_accuracy"],
}
COPIES_SEED = 12345


def copies_scores(clf: FingerprintClassifier) -> dict[str, float]:
    """The fitted model's NLL and accuracy on held-out noisy nuisance copies of its library
    (the fit's own noise model and nuisance, read back from its diagnostics)."""
    scaler = OODScaler.stored(clf.diagnostics_["ood"])
    assert scaler is not None
    noise = (scaler.alpha, scaler.beta)
    nuisance = with_estimates(clf.config_.nuisance, clf.diagnostics_["nuisance_estimate"])
    out = {}
    for name, mix in (("pure", 0.0), ("mixed", 0.3)):
        rng = np.random.default_rng(COPIES_SEED)
        drawn = dataclasses.replace(nuisance, n_augment=255, mix_share=mix)
        copies = augment_library(clf.library_, drawn, rng)
        noisy = with_noise(copies.spectra, noise, rng)
        with torch.no_grad():
            loc, scale = clf.raw_encoder_(torch.as_tensor(noisy, dtype=torch.float32))
            proba = predict_fast(clf.gp_, loc, scale.pow(2)).proba.numpy()
        out[f"copies_nll_{name}"] = negative_log_likelihood(proba, copies.class_index)
        out[f"copies_acc_{name}"] = accuracy(proba, copies.class_index)
    return out


def measure(name: str, seeds: list[int]) -> list[dict[str, Any]]:
    """Fit every seed on the library's realism series (2 frames of 24 x 32 px, dose 30)."""
    lib, kinds, normalise = libraries([name], DATA)[name]
    series = realistic_series(lib, RealismConfig(n_frames=2, shape=(24, 32), dose=30.0, ood_kinds=kinds))
    labels = series.labels.reshape(-1)
    args = argparse.Namespace(epochs=None, gp_iterations=None, set=None, estimate_nuisance=False)
    rows = []
    for seed in seeds:
        cfg = config(series.background_window, normalise, lib, args, seed)
        clf = FingerprintClassifier(config=cfg, progress=False).fit(series.spectra, lib)
        proba = clf.classify(series.spectra)["proba"].values.reshape(len(labels), -1)
        rows.append(
            {
                "seed": seed,
                "accuracy": accuracy(proba, labels),
                "ece": expected_calibration_error(proba, labels),
                "nll": negative_log_likelihood(proba, labels),
                "check": clf.diagnostics_["library_check"],
            }
            | copies_scores(clf)
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def best_of(rows: list[dict[str, Any]], score: str, restarts: int, draws: int = 1000) -> dict[str, float]:
    """Best-of-``restarts`` selection by ``score``: expected 5-seed accuracy range, mean accuracy, ECE."""
    acc = np.array([r["accuracy"] for r in rows])
    ece = np.array([r["ece"] for r in rows])
    value = np.array([SCORES[score](r) for r in rows])
    rng = np.random.default_rng(0)
    ranges, means, eces = [], [], []
    for _ in range(draws):
        groups = np.array([rng.choice(len(rows), restarts, replace=False) for _ in range(5)])
        chosen = groups[np.arange(5), value[groups].argmin(1)]
        ranges.append(np.ptp(acc[chosen]))
        means.append(acc[chosen].mean())
        eces.append(ece[chosen].mean())
    return {
        "expected_range": float(np.mean(ranges)),
        "p_range_at_most_0.01": float(np.mean(np.array(ranges) <= 0.01)),
        "mean_accuracy": float(np.mean(means)),
        "mean_ece": float(np.mean(eces)),
    }


def analyse(measured: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per library: Spearman rank correlation of each score with accuracy, and best-of-R for R = 1, 2, 3."""
    out: dict[str, Any] = {}
    for name, rows in measured.items():
        acc = np.array([r["accuracy"] for r in rows])
        lib: dict[str, Any] = {"single": best_of(rows, "copies_nll_pure", 1)}
        for score in SCORES:
            rho = spearmanr([-SCORES[score](r) for r in rows], acc).statistic
            lib[score] = {"spearman": float(rho)} | {f"best_of_{k}": best_of(rows, score, k) for k in (2, 3)}
        out[name] = lib
    return out


def markdown(measured: dict[str, list[dict[str, Any]]], analysis: dict[str, Any], command: str) -> str:
    """Per-seed table and the selection table."""
    lines = [f"# Restart study\n\nCommand: `{command}`\n"]
    for name, rows in measured.items():
        lines += [
            f"\n## {name}: per training seed (2 frames of 24 x 32 px, dose 30)\n",
            "| seed | accuracy | ECE | copies NLL (pure) | copies NLL (30 % mixed) | copies accuracy "
            "| self-consistency | latent accuracy |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['seed']} | {r['accuracy']:.4f} | {r['ece']:.3f} | {r['copies_nll_pure']:.4f} | "
                f"{r['copies_nll_mixed']:.4f} | {r['copies_acc_pure']:.4f} | "
                f"{r['check']['self_consistency']:.3f} | {r['check']['latent_accuracy']:.3f} |"
            )
        a = analysis[name]
        single = a["single"]
        lines += [
            f"\n## {name}: keeping the best of R restarts by each score (5 seeds per draw)\n",
            f"One fit per seed: expected 5-seed range {single['expected_range']:.4f}, "
            f"P(range <= 0.01) {single['p_range_at_most_0.01']:.2f}, mean accuracy "
            f"{single['mean_accuracy']:.4f}, mean ECE {single['mean_ece']:.4f}.\n",
            "| score | Spearman with accuracy | R | expected range | P(range <= 0.01) "
            "| mean accuracy | mean ECE |",
            "|---|---|---|---|---|---|---|",
        ]
        for score in SCORES:
            for k in (2, 3):
                b = a[score][f"best_of_{k}"]
                lines.append(
                    f"| {score} | {a[score]['spearman']:+.2f} | {k} | {b['expected_range']:.4f} | "
                    f"{b['p_range_at_most_0.01']:.2f} | {b['mean_accuracy']:.4f} | {b['mean_ece']:.4f} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=["mxene", "simulator"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, help="re-analyse measured runs")
    parser.add_argument("--json", type=Path, default=RESULTS / "restart_study.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "restart_study.md")
    args = parser.parse_args(argv)
    if args.from_json:
        parts = [json.loads(p.read_text()) for p in args.from_json]
        measured = {k: v for p in parts for k, v in p["measured"].items()}
        command = " && ".join(p["command"] for p in parts)
    else:
        measured = {name: measure(name, args.seeds) for name in args.libraries}
        command = "python evaluation/restart_study.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command, "measured": measured, "analysis": analyse(measured)}
    write_json(args.json, result)
    with atomic_write(args.markdown) as tmp:
        tmp.write_text(markdown(measured, result["analysis"], command))
    return result


if __name__ == "__main__":
    main()
