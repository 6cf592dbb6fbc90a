"""Config variants on the realism benchmark: one table from ``robustness.py --set ...`` runs.

The variants file (``results/robustness-variants.json``) holds ``{"note": ..., "variants":
{name: run}}``, each run a ``robustness.py`` result; the table puts each next to the
default run (``results/robustness.json``): accuracy, ECE and NLL at the paper's dose per
library, and the LSMO line scan's agreement per seed.

Usage::

    python evaluation/variants_table.py                       # rewrite the markdown from the JSON
    python evaluation/variants_table.py --add "mix_share 0.3 (MXene)=/tmp/r.json"   # append a run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from eelsprint.data.atomic import atomic_write, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from robustness import PAPER_DOSE, RESULTS

HEADER = (
    "| variant | library | accuracy (mean +- sd, range) | ECE | NLL | labels from |\n"
    "|---|---|---|---|---|---|"
)


def row(name: str, library: str, entry: dict[str, Any]) -> str:
    """One table row: a run's summary at the paper's dose for one library."""
    at = entry["doses"][str(PAPER_DOSE)]
    summary, runs = at["eelsprint_summary"], list(at["eelsprint"].values())
    acc = [r["accuracy"] for r in runs]
    source = ", ".join(sorted({r["labels_from"] for r in runs}))
    return (
        f"| {name} | {library} | {summary['accuracy']['mean']:.3f} +- {summary['accuracy']['sd']:.3f} "
        f"({min(acc):.3f}-{max(acc):.3f}) | {summary['ece']['mean']:.3f} +- {summary['ece']['sd']:.3f} "
        f"| {summary['nll']['mean']:.3f} | {source} |"
    )


def lsmo_line(name: str, run: dict[str, Any]) -> str:
    """Agreement with nearest fingerprint and 'either term high where they disagree', per seed."""
    per = run["lsmo"]["per_seed"]
    seeds = sorted(per, key=int)
    agree = ", ".join(f"{per[s]['agreement_with_nearest']:.3f}" for s in seeds)
    high = [per[s].get("either_high_where_disagree") for s in seeds]
    either = ", ".join("-" if h is None else f"{h:.2f}" for h in high)
    return f"- {name}: agreement {agree}; either high where they disagree {either}"


def markdown(base: dict[str, Any], variants: dict[str, Any]) -> str:
    """The variants' table, LSMO lines and commands, after the default run's rows."""
    named = [("default", base), *variants["variants"].items()]
    rows = [row(name, lib, entry) for name, run in named for lib, entry in run["libraries"].items()]
    lsmo = [lsmo_line(name, run) for name, run in named if run.get("lsmo")]
    commands = [f"- {name}: `{run['command']}`" for name, run in named]
    return "\n".join(
        [
            "# Config variants on the realism benchmark",
            "",
            variants["note"],
            "",
            HEADER,
            *rows,
            "",
            "LSMO line scan (agreement with nearest fingerprint per seed; epistemic or ood_score high on "
            "every disagreeing pixel):",
            "",
            *lsmo,
            "",
            "Commands:",
            "",
            *commands,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=RESULTS / "robustness.json")
    parser.add_argument("--variants", type=Path, default=RESULTS / "robustness-variants.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "robustness-variants.md")
    parser.add_argument("--add", nargs="+", default=[], metavar="NAME=RUN.json", help="append runs")
    args = parser.parse_args(argv)
    base = json.loads(args.base.read_text())
    variants = json.loads(args.variants.read_text())
    for item in args.add:
        name, sep, path = item.partition("=")
        if not sep or not name:
            parser.error(f"--add takes NAME=RUN.json, got {item!r}")
        variants["variants"][name] = json.loads(Path(path).read_text())
    if args.add:
        write_json(args.variants, variants)
    text = markdown(base, variants)
    with atomic_write(args.markdown) as tmp:
        tmp.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
