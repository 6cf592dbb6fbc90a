"""Train the shipped default model (models/default) exactly as `eelsprint demo` does.

Simulated heating series: 6 frames of 19 x 30 pixels, seed 0, default Config.
The model card's numbers come from evaluation/model_card_metrics.py on fresh
series (other seeds).

Usage::

    python evaluation/train_default_model.py --out models/default
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.simulate import simulate_series


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/default"))
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args(argv)
    config = Config()
    if args.epochs is not None:
        config = Config.from_dict({"train": {"epochs": args.epochs, "raw_epochs": args.epochs}})
    series = simulate_series(n_frames=args.frames, seed=0)
    clf = FingerprintClassifier(config=config).fit(series.spectra, series.library)
    clf.save(args.out)
    print(f"saved {args.out}: {clf.diagnostics_}")
    return args.out


if __name__ == "__main__":
    main()
