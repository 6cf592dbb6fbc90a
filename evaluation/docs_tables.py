"""Write the result tables of README.md and models/MODEL_CARD.md from the JSON files they quote.

Each table sits between ``<!-- table:NAME -->`` and ``<!-- /table -->`` in its document and is
rendered from one file: ``evaluation/results/demo-summary.json`` (``eelsprint demo``),
``bench-cpu-2core.json`` (``evaluation/bench.py``), ``fit-13680-cpu-2core.json``
(``evaluation/bench_fit.py``), ``model_card_metrics.json`` (``evaluation/model_card_metrics.py``),
``seed_study.json`` (``evaluation/seed_study.py``), ``active_loop.json``
(``evaluation/active_loop.py``) and ``models/default/model.json``.
``tests/test_docs_tables.py`` fails when a document no longer matches its files.

Usage::

    python evaluation/docs_tables.py            # rewrite the tables from the JSON files
    python evaluation/docs_tables.py --check    # exit 1 and name every stale table
    python evaluation/docs_tables.py --rerun    # rerun the demo and model_card_metrics first (minutes)
    python evaluation/docs_tables.py --rerun --demo-model models/default   # no fit: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "evaluation" / "results"
README, CARD = ROOT / "README.md", ROOT / "models" / "MODEL_CARD.md"
BLOCK = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)


def _json(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]], numeric: bool = False) -> str:
    """A markdown table; ``numeric`` right-aligns every column but the first."""
    align = ["---", *(["---:" if numeric else "---"] * (len(header) - 1))]
    return "\n".join([_row(header), _row(align), *map(_row, rows)])


def _sig(value: float) -> str:
    """Three significant digits, trailing zeros kept (1.80, 0.743, 279)."""
    return f"{value:#.3g}".rstrip(".")


def demo() -> str:
    """What ``eelsprint demo`` prints, from its saved summary."""
    from eelsprint.demo import format_summary

    return "```\n" + format_summary(_json("demo-summary.json")) + "\n```"


BENCH_ROWS = {
    "encoder_eager": "encoder only, eager (no uncertainty)",
    "head_fp32": "head fp32",
    "head_bf16": "head bf16",
    "head_int8": "head int8 (dense layers)",
    "pt2_aoti": "pt2 + AOTInductor",
    "onnx": "ONNX Runtime",
    "torchscript": "TorchScript",
    "fast_psi": "GP `fast` (closed form)",
    "exact_mc": "GP `exact` (Monte Carlo)",
    "paper_style": "paper-style (encoder + scikit-learn GPC)",
}


def bench() -> str:
    """``eelsprint bench`` on the 2-core CPU machine; the shipped fast pipeline in bold."""
    result = _json("bench-cpu-2core.json")
    rows = []
    for name, label in BENCH_ROWS.items():
        if name not in result["pipelines"]:
            continue
        p, q = result["pipelines"][name], result["quality"].get(name, {})
        cells = [
            label,
            f"{p['spectra_per_s']:,.0f}",
            f"{p['vs_paper']:.1f}x",
            _sig(p["b32_latency_ms"]),
            _sig(p["frame570_latency_ms"]),
            f"{q['accuracy']:.3f}" if "accuracy" in q else "-",
            f"{q['ece']:.3f}" if "ece" in q else "-",
        ]
        if name == result["fast_pipeline"]:
            cells = [f"**{cells[0]} (shipped fast path)**", *(f"**{c}**" for c in cells[1:3]), *cells[3:]]
        rows.append(cells)
    header = ["pipeline", "spectra/s", "vs paper-style", "batch-32 ms", "570-frame ms", "accuracy", "ECE"]
    return _table(header, rows, numeric=True)


def fit() -> str:
    """``evaluation/bench_fit.py`` on the paper's data set size."""
    r = _json("fit-13680-cpu-2core.json")
    header = ["spectra", "channels", "epochs", "fit (s)", "classify `fast` (spectra/s)", "classify `exact`"]
    row = [
        f"{r['spectra']:,}",
        str(r["channels"]),
        str(r["epochs"]),
        f"{r['fit_s']:.0f}",
        f"{r['classify_fast_spectra_per_s']:,}",
        f"{r['classify_exact_spectra_per_s']:,}",
    ]
    return _table(header, [row]) + f"\n\nMachine: {r['machine']}; classify times are medians of 3."


CARD_ROWS = {
    "eelsprint": "eelsprint (`fast`)",
    "eelsprint_no_encoder_variance": "ablation: GP at the latent mean (encoder variance ignored)",
    "eelsprint_plugin_softmax": "ablation: plain softmax at the latent mean (no variance)",
    "nearest_fingerprint": "nearest fingerprint",
    "pca_nearest_fingerprint": "PCA + nearest fingerprint",
    "peak_ratio": "peak/shoulder ratio (paper)",
    "pca_gp": "PCA + scikit-learn GPC (paper's classifier)",
}
CARD_KEYS = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "nll": "NLL (nats)",
    "brier": "Brier",
    "ece": "ECE",
    "ood_auroc": "OOD AUROC",
    "error_auroc": "error AUROC",
}


def _mean_sd(mean: float, sd: float) -> str:
    """``mean +- sd`` with 3 decimals (2 for means of 10 or more)."""
    digits = 2 if abs(mean) >= 10 else 3
    return f"{mean:.{digits}f} +- {sd:.{digits}f}"


def card_metrics() -> str:
    """The shipped model and every baseline on fresh series (mean +- sd over series)."""
    r = _json("model_card_metrics.json")
    rows = []
    for name, label in CARD_ROWS.items():
        cells = [label]
        for key in CARD_KEYS:
            v = r["summary"][name][key]
            constant = v["sd"] == 0.0 and v["mean"] == 0.5 and "auroc" in key
            cells.append("0.5 (no score)" if constant else _mean_sd(v["mean"], v["sd"]))
        rows.append(cells)
    seeds = ", ".join(map(str, r["seeds"]))
    shape = r["series"]
    caption = (
        f"Series seeds {seeds}; {shape['frames']} frames x {shape['shape'][0]} x {shape['shape'][1]} each; "
        "mean +- sd over the series; ECE with 10 equal-mass bins."
    )
    return caption + "\n\n" + _table(["method", *CARD_KEYS.values()], rows)


def card_encoder_variance() -> str:
    """Paired differences: eelsprint minus each ablation, per series, with mean and spread."""
    r = _json("model_card_metrics.json")
    rows = []
    for ablation in ("eelsprint_no_encoder_variance", "eelsprint_plugin_softmax"):
        for key in ("ece", "nll", "ood_auroc"):
            diff = np.array([s["eelsprint"][key] - s[ablation][key] for s in r["per_seed"]])
            better = diff > 0 if key == "ood_auroc" else diff < 0
            rows.append(
                [
                    CARD_ROWS[ablation].removeprefix("ablation: "),
                    CARD_KEYS[key],
                    " / ".join(f"{d:+.4f}" for d in diff),
                    f"{diff.mean():+.4f} +- {diff.std(ddof=1):.4f}",
                    f"{int(better.sum())} of {len(diff)}",
                ]
            )
    header = ["eelsprint minus", "score", "per series", "mean +- sd", "eelsprint better on"]
    return _table(header, rows)


def card_seeds() -> str:
    """The training-seed study (``evaluation/seed_study.py``)."""
    r = _json("seed_study.json")
    keys = {
        "accuracy": "accuracy",
        "ece": "ECE",
        "nll": "NLL",
        "brier": "Brier",
        "ood_auroc_epistemic": "OOD AUROC (epistemic)",
        "error_auroc_entropy": "error AUROC (entropy)",
        "kl_total": "latent KL (nats)",
    }

    def fmt(key: str, value: float) -> str:
        return f"{value:.1f}" if key == "kl_total" else f"{value:.3f}"

    rows = [[seed, *(fmt(k, row[k]) for k in keys)] for seed, row in r["per_seed"].items()]
    spread = r["mean_sd"]
    rows.append(["mean +- sd", *(f"{fmt(k, spread[k][0])} +- {fmt(k, spread[k][1])}" for k in keys)])
    caption = (
        f"Default config refitted with each training seed on the seed-{r['train_series_seed']} series "
        f"({r['frames']} frames), scored on a held-out series (seed {r['test_series_seed']}); ECE with 15 "
        "equal-width bins; sd over seeds (population). Nearest fingerprint on the same held-out series: "
        f"{r['nearest_fingerprint_accuracy']:.3f}."
    )
    return caption + "\n\n" + _table(["training seed", *keys.values()], rows)


def card_diagnostics() -> str:
    """Training diagnostics stored in the shipped model's ``model.json``."""
    d = json.loads((ROOT / "models" / "default" / "model.json").read_text())["diagnostics"]
    head, factors = d["head"], d["raw_scale_factor"]
    rows = [
        ["spectra fitted on", f"{d['n_spectra']:,}"],
        ["latent KL to the prior (nats)", f"{d['kl_total']:.1f}"],
        ["active latent dimensions (KL > 0.1 nats)", f"{d['active_dims']} of {len(d['kl_per_dim'])}"],
        ["raw encoder: squared error / variance on held-out spectra, before calibration",
         f"{d['raw_variance_ratio']:.2f}"],
        ["raw encoder: per-dimension scale factors", f"{min(factors):.2f}-{max(factors):.2f}"],
        ["distilled head vs its GP teacher: mean abs(dp)", f"{head['mean_abs_dp']:.4f}"],
        ["distilled head vs its GP teacher: labels agree", f"{100 * head['label_agreement']:.1f} %"],
    ]  # fmt: skip
    return _table(["diagnostic", "value"], rows)


def active_loop() -> str:
    """The replay's headline: re-acquisitions each strategy needs to reach random's final accuracy."""
    result = _json("active_loop.json")
    args, summary = result["args"], result["summary"]
    rows = []
    for name, row in summary["to_reach_random_final"].items():
        curve = summary["curves"][name]["accuracy"]
        pixels = "never" if row["pixels"] is None else f"{row['pixels']:.0f}"
        share = "-" if row["share_of_random"] is None else f"{row['share_of_random']:.2f}"
        between = row.get("share_interpolated")
        share += "" if between is None else f" ({between:.2f})"
        gain = f"{row['final_gain_over_random']:+.4f} ± {row['final_gain_sd']:.4f}"
        rows.append([name, f"{curve['mean'][0]:.3f} → {curve['mean'][-1]:.3f}", pixels, share, gain])
    final = summary["n_reacquired"][-1]
    header = [
        "strategy",
        f"accuracy, 0 → {final:.0f} re-acquired (mean)",
        f"re-acquisitions to reach random's {summary['random_final_accuracy']:.3f}",
        "share of random's (read between grid points)",
        "final accuracy − random's (paired, ± sd)",
    ]
    note = (
        f"\n\n{args['library']} library, {len(args['seeds'])} seeds; {args['frames']} frame(s) of "
        f"{args['shape'][0]} x {args['shape'][1]} pixels at dose {args['dose']:g}, re-acquired at "
        f"{args['dose_factor']:g} x; {args['rounds']} rounds of {args['k']} pixels; fit with "
        f"{args['epochs'] or 'the default'} epochs, GP refitted each round "
        f"({args['gp_iterations']} iterations)"
        + (
            "; each confident re-acquired label also on the pixel's low-dose latent."
            if args.get("transfer")
            else "."
        )
    )
    return _table(header, rows) + note


TABLES: dict[Path, dict[str, Callable[[], str]]] = {
    README: {"demo": demo, "bench": bench, "fit": fit, "active-loop": active_loop},
    CARD: {
        "card-diagnostics": card_diagnostics,
        "card-metrics": card_metrics,
        "card-encoder-variance": card_encoder_variance,
        "card-seeds": card_seeds,
    },
}


def render(path: Path) -> str:
    """``path``'s text with every table block rewritten from its files."""
    tables = TABLES[path]
    text = path.read_text(encoding="utf-8")
    found = [m["name"] for m in BLOCK.finditer(text)]
    if sorted(found) != sorted(tables):
        raise SystemExit(f"{path}: table markers {sorted(found)} but expected {sorted(tables)}")
    return BLOCK.sub(lambda m: m[1] + tables[m["name"]]() + "\n" + m[4], text)


def stale() -> list[str]:
    """Documents whose tables differ from what their JSON files give."""
    return [str(p.relative_to(ROOT)) for p in TABLES if render(p) != p.read_text(encoding="utf-8")]


def rerun(demo_model: Path | None = None) -> None:
    """Regenerate ``demo-summary.json`` and ``model_card_metrics.json``.

    The demo summary comes from ``eelsprint demo`` (a fit: minutes), or, with ``demo_model``, from
    that saved model scored on the demo's series (the shipped model is the model the demo trains).
    """
    import importlib.util

    from eelsprint import FingerprintClassifier
    from eelsprint.data.atomic import write_json
    from eelsprint.data.simulate import simulate_series
    from eelsprint.demo import run_demo, summarise

    if demo_model is None:
        with tempfile.TemporaryDirectory() as tmp:
            run_demo(tmp)
            shutil.copyfile(Path(tmp) / "summary.json", RESULTS / "demo-summary.json")
    else:
        clf = FingerprintClassifier.load(demo_model, progress=False)
        series = simulate_series(n_frames=6, seed=0)
        write_json(RESULTS / "demo-summary.json", summarise(clf, series, clf.classify(series.spectra)))
    script = ROOT / "evaluation" / "model_card_metrics.py"
    spec = importlib.util.spec_from_file_location("model_card_metrics", script)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = os.path.relpath(ROOT / "models" / "default")  # "models/default" in the JSON, run from the root
    module.main(["--model", model, "--json", str(RESULTS / "model_card_metrics.json")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a table is stale; write nothing")
    mode.add_argument("--rerun", action="store_true", help="rerun the demo and model_card_metrics first")
    parser.add_argument(
        "--demo-model",
        type=Path,
        help="with --rerun: score this saved model on the demo's series instead of fitting one",
    )
    args = parser.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"{name}: stale tables; run python evaluation/docs_tables.py", file=sys.stderr)
        return 1 if bad else 0
    if args.rerun:
        rerun(args.demo_model)
    for path in TABLES:
        path.write_text(render(path), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
