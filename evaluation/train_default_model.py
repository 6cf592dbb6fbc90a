"""Train the shipped default model (models/default) exactly as `eelsprint demo` does.

Simulated heating series: 6 frames of 19 x 30 pixels, seed 0, default Config.
The model card's numbers come from evaluation/model_card_metrics.py on fresh
series (other seeds).

Usage::

    python evaluation/train_default_model.py --out models/default
    python evaluation/train_default_model.py --out models/default --ood-only   # keep the weights

``--ood-only`` recomputes only the out-of-library standardisation that ``fit``
stores (``diagnostics_["ood"]``, :mod:`eelsprint.inference.ood`) from the same
training series with the current code, and keeps the weights: what ``fit`` would
store on them, without retraining (which would change every number that the
model card quotes).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.simulate import simulate_series
from eelsprint.inference.features import NuisancePrior
from eelsprint.inference.ood import OODScaler, library_features


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/default"))
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--ood-only", action="store_true", help="restandardise ood_score, keep the weights")
    args = parser.parse_args(argv)
    series = simulate_series(n_frames=args.frames, seed=0)
    if args.ood_only:
        clf = FingerprintClassifier.load(args.out, progress=False)
        old = clf.diagnostics_["ood"]
        x = clf.prepare(series.spectra).flat()  # what fit trained on
        noise = (float(old["alpha"]), float(old["beta"]))
        ranges = clf.config_.nuisance
        nuisance = NuisancePrior.from_ranges(ranges.shift_ev, ranges.broaden_ev)
        lib, seed = clf.library_.spectra, clf.config_.train.seed
        _, scan, prior = library_features(x, lib, clf.energy_, noise, nuisance, seed=seed)
        clf.diagnostics_["ood"] = OODScaler.learn(scan, noise, prior, nuisance).to_dict()
        clf.save(args.out)
        print(f"saved {args.out}: ood {old} -> {clf.diagnostics_['ood']}")
        return args.out
    config = Config()
    if args.epochs is not None:
        config = Config.from_dict({"train": {"epochs": args.epochs, "raw_epochs": args.epochs}})
    clf = FingerprintClassifier(config=config).fit(series.spectra, series.library)
    clf.save(args.out)
    print(f"saved {args.out}: {clf.diagnostics_}")
    return args.out


if __name__ == "__main__":
    main()
