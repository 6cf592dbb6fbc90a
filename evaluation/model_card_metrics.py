"""Regenerate the shipped model's model-card numbers: mean +- sd over fresh simulated series.

Loads ``models/default`` (trained on the simulator's seed 0), classifies fresh
series with seeds 1, 2 and 3, scores each against its ground truth (eelsprint
and every baseline), prints a markdown table of mean +- sd over the seeds and
writes ``evaluation/results/model_card_metrics.json``.

Usage::

    python evaluation/model_card_metrics.py
    python evaluation/model_card_metrics.py --model M --seeds 1 --frames 1 --shape 8 10   # smoke test
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from eelsprint import FingerprintClassifier
from eelsprint.data.atomic import write_json
from eelsprint.data.simulate import simulate_series
from eelsprint.inference.recalibrate import latent_moments, scaled_proba
from eelsprint.report.baselines import run_baselines
from eelsprint.report.scoring import truth_scores

KEYS = ("accuracy", "macro_f1", "nll", "brier", "ece", "ood_auroc", "error_auroc", "selective_area")


def score_seed(clf: FingerprintClassifier, seed: int, frames: int, shape: tuple[int, int]) -> dict[str, Any]:
    """Scores of eelsprint, of its two ablations and of every baseline on a fresh simulated series.

    Ablations: the GP's predictive at the raw encoder's latent mean (encoder variance ignored) and
    the plain softmax of the GP's mean there (no variance at all).
    """
    series = simulate_series(frames, shape, seed=seed)
    x, y = series.spectra.flat(), series.labels.reshape(-1)
    ds = clf.classify(x)
    terms = {name: ds[name].values for name in ("entropy", "epistemic")}
    rows = {
        "eelsprint": truth_scores(ds["proba"].values, y, terms, error_term="entropy", ood_term="epistemic")
    }
    mean0, var0 = latent_moments(clf, x, encoder_variance=False)  # ablations: the same GP, no encoder var
    rows["eelsprint_no_encoder_variance"] = truth_scores(scaled_proba(mean0, var0), y)
    rows["eelsprint_plugin_softmax"] = truth_scores(scaled_proba(mean0, 0 * var0), y)
    cfg = clf.config_
    for name, proba in run_baselines(
        x,
        clf.library_,
        n_components=cfg.preprocess.pca_components,
        latent_dim=cfg.model.latent_dim,
        nuisance=cfg.nuisance,
        seed=seed,
    ).items():
        rows[name] = truth_scores(proba, y)
    return {name: {k: row[k] for k in KEYS} for name, row in rows.items()}


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """Mean and sample standard deviation over seeds of every method's every score."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for name in per_seed[0]:
        out[name] = {}
        for key in KEYS:
            values = [s[name][key] for s in per_seed if s[name][key] is not None]
            out[name][key] = {
                "mean": float(np.mean(values)) if values else None,
                "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            }
    return out


def markdown(summary: dict[str, dict[str, dict[str, float | None]]], seeds: list[int]) -> str:
    """The summary as a markdown table (rows: methods; cells: mean +- sd)."""

    def cell(v: dict[str, float | None]) -> str:
        if v["mean"] is None:
            return "–"
        return f"{v['mean']:.3f}" + (f" ± {v['sd']:.3f}" if v["sd"] is not None else "")

    lines = [
        f"Mean ± sd over simulated series with seeds {', '.join(map(str, seeds))}.",
        "",
        "| method | " + " | ".join(KEYS) + " |",
        "|---" * (len(KEYS) + 1) + "|",
    ]
    lines += [f"| {name} | " + " | ".join(cell(row[k]) for k in KEYS) + " |" for name, row in summary.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=2, default=(19, 30))
    parser.add_argument("--json", type=Path, default=Path("evaluation/results/model_card_metrics.json"))
    args = parser.parse_args(argv)
    clf = FingerprintClassifier.load(args.model, progress=False)
    per_seed = [score_seed(clf, seed, args.frames, tuple(args.shape)) for seed in args.seeds]
    summary = summarise(per_seed)
    result = {
        "model": str(args.model),
        "seeds": args.seeds,
        "series": {"frames": args.frames, "shape": list(args.shape)},
        "summary": summary,
        "per_seed": per_seed,
    }
    print(markdown(summary, args.seeds))
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
