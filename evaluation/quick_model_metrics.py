"""What the test suite's quick model measures: the source of the ``# measured:`` comments in tests.

Fits the quick model of ``tests/conftest.py`` (default config, ``gp_iterations = 200``) on the
3-frame series (seed 0) with several training seeds and scores it exactly as the tests do:

- on the held-out 3-frame series (seed 11): accuracy, ECE, NLL against the majority class, nearest
  fingerprint and PCA + nearest fingerprint (``tests/quality.QUICK_HELD_OUT``), and the epistemic
  OOD AUROC against the plain softmax's entropy (``tests/test_classify.py``);
- on the training series: the distilled head against its GP teacher (``tests/test_infer.py``).

Usage::

    python evaluation/quick_model_metrics.py --seeds 0 1 2 --json evaluation/results/quick-model-metrics.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.atomic import write_json
from eelsprint.data.simulate import simulate_series
from eelsprint.inference.metrics import expected_calibration_error, ood_auroc
from eelsprint.inference.recalibrate import latent_moments, scaled_proba
from eelsprint.report.scoring import entropy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.quality import baselines, scores


def measure(seed: int) -> dict:
    """One quick fit (training seed ``seed``) scored as the tests score it."""
    series, held_out = simulate_series(n_frames=3, seed=0), simulate_series(n_frames=3, seed=11)
    config = Config.from_dict({"train": {"gp_iterations": 200, "seed": seed}})
    clf = FingerprintClassifier(config=config, progress=False).fit(series.spectra, series.library)
    x, y = held_out.spectra.flat(), held_out.labels.reshape(-1)
    proba = clf.predict_proba(held_out.spectra).reshape(len(y), -1)
    held = {"eelsprint": scores(proba, y)}
    held.update({name: scores(p, y) for name, p in baselines(held_out).items()})
    result = clf.classify(held_out.spectra)
    mean, var = latent_moments(clf, x, encoder_variance=False)
    held["ood_auroc_epistemic"] = ood_auroc(result["epistemic"].values.reshape(-1), y)
    held["ood_auroc_plugin_entropy"] = ood_auroc(entropy(scaled_proba(mean, 0 * var)), y)

    labels = series.labels.reshape(-1)
    train = {}
    for mode in ("head", "fast"):
        ds = clf.classify(series.spectra, mode=mode)
        train[mode] = {
            "ece": expected_calibration_error(ds["proba"].values.reshape(len(labels), -1), labels),
            "ood_auroc": ood_auroc(ds["epistemic"].values.reshape(-1), labels),
        }
    train["nearest_fingerprint_ece"] = scores(baselines(series)["nearest_fingerprint"], labels)["ece"]
    return {"seed": seed, "held_out": held, "training_series": train}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = []
    for seed in args.seeds:
        runs.append(measure(seed))
        held = runs[-1]["held_out"]
        print(
            f"seed {seed}: accuracy {held['eelsprint']['accuracy']:.4f} ece {held['eelsprint']['ece']:.4f} "
            f"nll {held['eelsprint']['nll']:.4f} | nearest {held['nearest_fingerprint']['accuracy']:.4f} "
            f"pca+nearest {held['pca_nearest_fingerprint']['accuracy']:.4f} "
            f"| ood {held['ood_auroc_epistemic']:.4f} "
            f"plugin {held['ood_auroc_plugin_entropy']:.4f} | train {runs[-1]['training_series']}",
            flush=True,
        )
    if args.json is not None:
        write_json(args.json, {"config": {"gp_iterations": 200, "frames": 3}, "runs": runs})
    return runs


if __name__ == "__main__":
    main()
