"""Realism benchmark (issue 8): eelsprint against the baselines on data it was not designed on.

Libraries (the paper's DFT fingerprints ``mxene``, the measured Cu L2,3 references
``cu``, the simulator's ``simulator``) become known-truth series through
:mod:`eelsprint.data.realism` at the paper's dose and over a dose sweep. eelsprint
(public API: it measures whatever model the code has) is fitted on each unlabelled
series and scored next to the baselines of :mod:`eelsprint.report.baselines`; plus
the real LSMO line scan of the issue. Writes JSON and a markdown table.

Usage::

    python evaluation/robustness.py                       # the full benchmark (5 seeds, 13,680 px)
    python evaluation/robustness.py --seeds 0 --frames 1 --shape 8 10 --doses 30 --epochs 1 \\
        --gp-iterations 20 --json /tmp/r.json --markdown /tmp/r.md   # smoke test
    python evaluation/robustness.py --merge a.json b.json   # runs of separate libraries, combined
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter1d

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.atomic import atomic_write, write_json
from eelsprint.data.preprocess import crop, library_on_axis, preprocess
from eelsprint.data.realism import KINDS, RealismConfig, realistic_series
from eelsprint.data.simulate import fingerprint_library
from eelsprint.inference.metrics import (
    accuracy,
    confusion,
    ece_floor,
    expected_calibration_error,
    negative_log_likelihood,
    ood_auroc,
)
from eelsprint.io import Library, read_library, read_spectra
from eelsprint.report.baselines import (
    mlls_fit,
    nearest_fingerprint,
    one_hot,
    pca_gp_proba,
    pca_nearest_proba,
    supervised_ceiling,
)

#: Counts per channel at the edge maximum of the mean library spectrum in the paper-sized
#: demo series (eelsprint's simulator: 60 at the richest composition's peak, ~30 at the mean's).
PAPER_DOSE = 30.0
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
BASELINES = ("nearest_fingerprint", "pca_nearest", "pca_gp", "mlls", "supervised_ceiling")


def cu_library(folder: Path, step: float = 0.25) -> Library:
    """The measured Cu L2,3 references on a common axis (box-averaged to ``step`` eV, unit area)."""
    spectra = {Path(p).stem: read_spectra(p) for p in sorted(glob.glob(str(folder / "*.dm4")))}
    low = max(s.energy[0] for s in spectra.values())
    high = min(s.energy[-1] for s in spectra.values())
    energy = np.arange(np.ceil(low), high, step)
    rows = []
    for s in spectra.values():
        width = max(1, round(step / float(s.energy[1] - s.energy[0])))
        row = np.interp(energy, s.energy, uniform_filter1d(s.data.reshape(-1), width))
        rows.append(row / np.trapezoid(row, energy))
    return Library(np.array(rows), energy, np.array(list(spectra)), source=str(folder))


def libraries(names: list[str], data: Path) -> dict[str, tuple[Library, tuple[str, ...], str]]:
    """Name -> (library, out-of-library kinds, normalisation) for each available library."""
    no_background = ("foreign_edge", "extra_feature")  # a zero class looks exactly like background
    out: dict[str, tuple[Library, tuple[str, ...], str]] = {}
    if "mxene" in names and (data / "mxene_dft").is_dir():
        out["mxene"] = (read_library(data / "mxene_dft"), no_background, "none")
    if "cu" in names and (data / "real" / "cu_l23").is_dir():
        out["cu"] = (cu_library(data / "real" / "cu_l23"), KINDS, "edge")
    if "simulator" in names:
        out["simulator"] = (fingerprint_library(), no_background, "none")
    return out


def config(
    background: tuple[float, float] | None, normalise: str, lib: Library, args: Any, seed: int
) -> Config:
    """eelsprint's settings for one series: background on the pre-edge, normalisation, training."""
    pre: dict[str, Any] = {"background_window": list(background) if background else None}
    if normalise == "edge":
        pre |= {"normalise": "edge", "normalise_window": [float(lib.energy[0]), float(lib.energy[-1])]}
    return settings(pre, args, seed)


def settings(pre: dict[str, Any], args: Any, seed: int) -> Config:
    """The benchmark's fit settings around the ``[preprocess]`` section ``pre``: training
    overrides, no head, the ``[nuisance]`` choice, then any ``--set`` overrides."""
    sections: dict[str, dict[str, Any]] = {
        "preprocess": dict(pre),
        "train": training(args, seed),
        "head": {"enabled": False},
        "nuisance": nuisance(args),
    }
    for (section, name), value in overrides(getattr(args, "set", None) or []).items():
        sections.setdefault(section, {})[name] = value
    return Config.from_dict(sections)


def overrides(items: list[str]) -> dict[tuple[str, str], Any]:
    """``--set SECTION.KEY=JSON`` items -> ``{(section, key): value}``; ValueError names a bad one."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        section, dot, name = key.partition(".")
        try:
            if not (eq and dot and section and name):
                raise ValueError
            out[section, name] = json.loads(value)
        except ValueError:
            raise ValueError(
                f"--set {item!r}: expected SECTION.KEY=JSON, e.g. nuisance.mix_share=0.2"
            ) from None
    return out


def nuisance(args: Any) -> dict[str, Any]:
    """The ``[nuisance]`` overrides: ``--estimate-nuisance`` widens the augmentation to the data."""
    return {"estimate": True} if getattr(args, "estimate_nuisance", False) else {}


def training(args: Any, seed: int) -> dict[str, Any]:
    """The ``[train]`` overrides from the command line (defaults: eelsprint's own)."""
    train: dict[str, Any] = {"seed": seed}
    if args.epochs is not None:
        train |= {"epochs": args.epochs, "raw_epochs": args.epochs}
    if args.gp_iterations is not None:
        train["gp_iterations"] = args.gp_iterations
    return train


def kind_aurocs(score: np.ndarray, kinds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUROC of ``score`` for each out-of-library kind against the library pixels."""
    return {
        KINDS[k]: ood_auroc(score[(kinds == k) | (labels >= 0)], labels[(kinds == k) | (labels >= 0)])
        for k in np.unique(kinds[kinds >= 0])
    }


def scores(
    proba: np.ndarray, labels: np.ndarray, seconds: float, ood: dict[str, np.ndarray], kinds: np.ndarray
) -> dict:
    """Accuracy and mean confidence (library pixels: above accuracy is overconfident, below
    underconfident), ECE, NLL, throughput and per-kind OOD AUROC of each score."""
    out: dict[str, Any] = {
        "accuracy": accuracy(proba, labels),
        "confidence": float(proba[labels >= 0].max(-1).mean()),
        "ece": expected_calibration_error(proba, labels),
        "ece_floor": ece_floor(proba, labels),
        "nll": negative_log_likelihood(proba, labels),
        "spectra_per_s": len(labels) / max(seconds, 1e-9),
    }
    for name, score in ood.items():
        out[f"ood_auroc_{name}"] = kind_aurocs(score, kinds, labels)
    return out


def timed(fn: Any, *a: Any, **k: Any) -> tuple[Any, float]:
    """``fn(*a, **k)`` and its wall time in seconds."""
    start = time.perf_counter()
    return fn(*a, **k), time.perf_counter() - start


def run_baselines(x: np.ndarray, lib: Library, labels: np.ndarray, kinds: np.ndarray) -> dict[str, dict]:
    """Every baseline's scores on the preprocessed series ``x`` (n, channels on the library axis)."""
    n_classes, out = len(lib.classes), {}
    nf, t = timed(nearest_fingerprint, x, lib)
    out["nearest_fingerprint"] = scores(one_hot(nf, n_classes), labels, t, {}, kinds)
    proba, t = timed(pca_nearest_proba, x, lib)
    out["pca_nearest"] = scores(proba, labels, t, {}, kinds)
    proba, t = timed(pca_gp_proba, x, lib)
    entropy = -(proba * np.log(np.clip(proba, 1e-12, None))).sum(-1)
    out["pca_gp"] = scores(proba, labels, t, {"entropy": entropy}, kinds)
    (scale, residual), t = timed(mlls_fit, x, lib)
    out["mlls"] = scores(one_hot(scale.argmax(-1), n_classes), labels, t, {"residual": residual}, kinds)
    (proba, test), t = timed(supervised_ceiling, x, labels, n_classes)
    out["supervised_ceiling"] = scores(proba, labels[test], t, {}, kinds[test])
    return out


def run_eelsprint(series: Any, lib: Library, normalise: str, args: Any, seed: int) -> dict:
    """Fit eelsprint on the unlabelled series with the library, classify it, score it."""
    cfg = config(series.background_window, normalise, lib, args, seed)
    clf, fit_s = timed(FingerprintClassifier(config=cfg, progress=False).fit, series.spectra, lib)
    ds, t = timed(clf.classify, series.spectra)
    labels, kinds = series.labels.reshape(-1), series.ood_kind.reshape(-1)
    proba = ds["proba"].values.reshape(len(labels), -1)
    ood = {v: ds[v].values.reshape(-1) for v in ("epistemic", "ood_score") if v in ds}
    diagnostics = {k: v for k, v in clf.diagnostics_.items() if isinstance(v, int | float | str)}
    return scores(proba, labels, t, ood, kinds) | {
        "fit_s": fit_s,
        "labels_from": ds.attrs.get("labels_from"),
        "confusion": confusion(proba, labels).tolist(),
        "diagnostics": diagnostics,
    }


def summarise(runs: list[dict]) -> dict[str, Any]:
    """Mean, sd and range over seeds of every scalar score (and each AUROC kind)."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, float):
            v = np.array([r[key] for r in runs])
            out[key] = {"mean": float(v.mean()), "sd": float(v.std()), "range": float(v.max() - v.min())}
        elif key.startswith("ood_auroc"):
            out[key] = {k: float(np.mean([r[key][k] for r in runs])) for k in value}
    return out


def lsmo_case(path: Path, seeds: list[int], args: Any) -> dict[str, Any]:
    """The issue's LSMO line scan: library = means of the first and last 5 preprocessed pixels."""
    cfg_dict = {
        "window": [490, 570],
        "background_window": [490, 520],
        "normalise": "area",
        "pca_components": 5,
    }
    raw = read_spectra(path)
    data = preprocess(raw, Config.from_dict({"preprocess": cfg_dict}).preprocess)
    x, names = data.flat(), np.array(["first", "last"])
    lib = Library(np.stack([x[:5].mean(0), x[-5:].mean(0)]), data.energy, names, str(path))
    nf, own, runs = nearest_fingerprint(x, lib), np.r_[np.zeros(5, int), np.ones(5, int)], {}
    for seed in seeds:
        cfg = settings(cfg_dict, args, seed)
        clf = FingerprintClassifier(config=cfg, progress=False).fit(raw, lib)
        ds = clf.classify(raw)
        proba = ds["proba"].values.reshape(len(x), -1)
        label = proba.argmax(-1)
        agree = label == nf
        run: dict[str, Any] = {
            "labels": np.bincount(label, minlength=2).tolist(),
            "agreement_with_nearest": float(agree.mean()),
            "own_pixels_correct": int((label[np.r_[0:5, len(x) - 5 : len(x)]] == own).sum()),
            "max_proba_median": float(np.median(proba.max(-1))),
            "labels_from": ds.attrs.get("labels_from"),
        }
        either = np.zeros(len(x), dtype=bool)  # epistemic or ood_score high, pixel by pixel
        for v in ("epistemic", "ood_score"):
            if v in ds:
                score = ds[v].values.reshape(-1)
                run[f"{v}_median_agree"] = float(np.median(score[agree]))
                run[f"{v}_median_disagree"] = float(np.median(score[~agree])) if (~agree).any() else None
                high = np.quantile(score[agree], 0.9) if agree.any() else -np.inf
                either |= score > high
                run[f"{v}_high_where_disagree"] = (
                    float((score[~agree] > high).mean()) if (~agree).any() else None
                )
        run["either_high_where_disagree"] = float(either[~agree].mean()) if (~agree).any() else None
        runs[seed] = run
    return {
        "nearest_fingerprint_split": np.bincount(nf, minlength=2).tolist(),
        "config": cfg_dict,
        "per_seed": runs,
    }


def either_high(run: dict[str, Any]) -> float:
    """Share of the LSMO pixels where labels and nearest fingerprint disagree that have a high
    epistemic or a high ``ood_score`` (above the 90th percentile where they agree), pixel by pixel;
    for runs recorded before that was measured, the larger of the two terms' shares (a lower bound)."""
    if run.get("either_high_where_disagree") is not None:
        return float(run["either_high_where_disagree"])
    return max(run.get("epistemic_high_where_disagree") or 0, run.get("ood_score_high_where_disagree") or 0)


def done_when(result: dict) -> dict[str, dict[str, Any]]:
    """The issue's conditions at the paper's dose, each met (True), not met (False) or not measured (None)."""
    out: dict[str, dict[str, Any]] = {}
    for name, lib in result["libraries"].items():
        if str(PAPER_DOSE) not in lib["doses"]:  # an interrupted run
            continue
        paper = lib["doses"][str(PAPER_DOSE)]
        eel, base = paper["eelsprint_summary"], paper["baselines"]
        acc = eel["accuracy"]["mean"]
        ood = eel.get("ood_auroc_ood_score") or eel.get("ood_auroc_epistemic") or {}
        n_seeds = len(paper["eelsprint"])
        out[name] = {
            "accuracy >= pca_gp": acc >= base["pca_gp"]["accuracy"],
            "accuracy >= mlls": acc >= base["mlls"]["accuracy"],
            "accuracy >= ceiling - 0.01": acc >= base["supervised_ceiling"]["accuracy"] - 0.01,
            "ece <= 0.02": eel["ece"]["mean"] <= 0.02,
            "ood auroc >= 0.9 each kind": bool(ood) and min(ood.values()) >= 0.9,
            "accuracy range <= 0.01 over 5 seeds": eel["accuracy"]["range"] <= 0.01 if n_seeds >= 5 else None,
        }
    if result.get("lsmo"):
        runs = list(result["lsmo"]["per_seed"].values())
        out["lsmo"] = {
            "own pixels own class": all(r["own_pixels_correct"] == 10 for r in runs),
            "agreement >= 0.9": all(r["agreement_with_nearest"] >= 0.9 for r in runs),
            "epistemic/ood high where they disagree": all(
                r["agreement_with_nearest"] == 1.0 or either_high(r) >= 0.9 for r in runs
            ),
        }
    return out


def markdown(result: dict) -> str:
    """Tables: each library at the paper's dose, the dose sweep, LSMO, and the issue's conditions."""
    fmt = lambda v: "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"  # noqa: E731
    lines = [f"# Robustness benchmark\n\nCommand: `{result['command']}`\n"]
    for name, lib in result["libraries"].items():
        if str(PAPER_DOSE) not in lib["doses"]:
            continue
        paper, kinds = lib["doses"][str(PAPER_DOSE)], lib["ood_kinds"]
        lines += [
            f"\n## {name} ({lib['n_spectra']} spectra per series, dose {PAPER_DOSE:g})\n",
            "| method | accuracy | confidence | ECE | ECE floor | NLL | "
            + " | ".join(f"AUROC {k}" for k in kinds)
            + " | spectra/s |",
            "|---|" + "---|" * (6 + len(kinds)),
        ]
        eel = paper["eelsprint_summary"]
        for score in ("epistemic", "ood_score"):
            if f"ood_auroc_{score}" not in eel:
                continue
            au = eel[f"ood_auroc_{score}"]
            row = f"| eelsprint ({len(paper['eelsprint'])} seeds, OOD by {score}) | "
            row += " | ".join(
                f"{eel[m]['mean']:.3f} +- {eel[m]['sd']:.3f}" if m in eel else "-"
                for m in ("accuracy", "confidence", "ece", "ece_floor", "nll")
            )
            row += (
                " | "
                + " | ".join(fmt(au.get(k)) for k in kinds)
                + f" | {eel['spectra_per_s']['mean']:,.0f} |"
            )
            lines.append(row)
        for base, s in paper["baselines"].items():
            au = next((v for k, v in s.items() if k.startswith("ood_auroc")), {})
            cells = [fmt(s.get(m)) for m in ("accuracy", "confidence", "ece", "ece_floor", "nll")]
            cells += [fmt(au.get(k)) for k in kinds]
            lines.append(f"| {base} | " + " | ".join(cells) + f" | {s['spectra_per_s']:,.0f} |")
    lines += [
        "\n## Accuracy over the dose sweep\n",
        "| library | dose | eelsprint | " + " | ".join(BASELINES) + " |",
    ]
    lines.append("|---|---|---|" + "---|" * len(BASELINES))
    for name, lib in result["libraries"].items():
        for dose, d in lib["doses"].items():
            cells = [fmt(d["eelsprint_summary"]["accuracy"]["mean"])]
            cells += [fmt(d["baselines"][b]["accuracy"]) for b in BASELINES]
            lines.append(f"| {name} | {float(dose):g} | " + " | ".join(cells) + " |")
    if result.get("lsmo"):
        lines += [
            "\n## LSMO line scan (40 px)\n",
            f"Nearest fingerprint split: {result['lsmo']['nearest_fingerprint_split']}\n",
        ]
        for seed, r in result["lsmo"]["per_seed"].items():
            lines.append(f"- seed {seed}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    lines.append("\n## Done when (paper's dose)\n")
    state = {True: "met", False: "NOT met", None: "not measured"}
    for name, conditions in result["done_when"].items():
        lines.append(f"- {name}: " + "; ".join(f"{k}: {state[v]}" for k, v in conditions.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--libraries", nargs="*", default=["mxene", "cu", "simulator"], help="none: the LSMO case only"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sweep-seeds", type=int, default=None, help="seeds at doses other than the paper's")
    parser.add_argument("--doses", type=float, nargs="+", default=[3.0, 10.0, PAPER_DOSE, 100.0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--shape", type=int, nargs=2, default=[19, 30])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--gp-iterations", type=int, default=None)
    parser.add_argument("--no-lsmo", action="store_true")
    parser.add_argument(
        "--estimate-nuisance",
        action="store_true",
        help="fit with [nuisance] estimate = true (default: false)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=None,
        metavar="SECTION.KEY=JSON",
        help="config overrides for a variant, e.g. nuisance.mix_share=0.2",
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, default=RESULTS / "robustness.json")
    parser.add_argument("--markdown", type=Path, default=RESULTS / "robustness.md")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="combine separate runs")
    args = parser.parse_args(argv)
    try:
        overrides(args.set or [])
    except ValueError as err:
        parser.error(str(err))
    if args.merge:
        return finish(merge([json.loads(p.read_text()) for p in args.merge]), args)
    doses = sorted(set(args.doses) | {PAPER_DOSE})
    argv_used = sys.argv[1:] if argv is None else argv
    result: dict[str, Any] = {
        "command": "python evaluation/robustness.py " + " ".join(argv_used),
        "paper_dose": PAPER_DOSE,
        "libraries": {},
    }
    lsmo = args.data / "real" / "lsmo" / "LSMO_linescan.hspy"
    if not args.no_lsmo and lsmo.is_file():
        result["lsmo"] = lsmo_case(lsmo, args.seeds, args)
        print(f"LSMO: {result['lsmo']['per_seed']}", flush=True)
    for name, (lib, kinds, normalise) in libraries(args.libraries, args.data).items():
        entry: dict[str, Any] = {"ood_kinds": list(kinds), "normalise": normalise, "doses": {}}
        for dose in doses:
            rc = RealismConfig(n_frames=args.frames, shape=tuple(args.shape), dose=dose, ood_kinds=kinds)
            series = realistic_series(lib, rc)
            cfg = config(series.background_window, normalise, lib, args, 0).preprocess
            data = preprocess(series.spectra, cfg)
            axis_lib = library_on_axis(lib, data.energy, cfg)
            x = crop(data, (axis_lib.energy[0], axis_lib.energy[-1])).flat()
            labels, ood_kind = series.labels.reshape(-1), series.ood_kind.reshape(-1)
            sweep = dose != PAPER_DOSE and args.sweep_seeds is not None
            seeds = args.seeds[: args.sweep_seeds] if sweep else args.seeds
            runs = [run_eelsprint(series, lib, normalise, args, seed) for seed in seeds]
            entry["n_spectra"] = len(labels)
            entry["doses"][str(dose)] = {
                "mixed_share": float(series.mixed.mean()),
                "ood_share": float((labels < 0).mean()),
                "baselines": run_baselines(x, axis_lib, labels, ood_kind),
                "eelsprint": dict(zip(map(str, seeds), runs, strict=True)),
                "eelsprint_summary": summarise(runs),
            }
            acc = entry["doses"][str(dose)]["eelsprint_summary"]["accuracy"]["mean"]
            print(f"{name} dose {dose:g}: eelsprint accuracy {acc:.3f}", flush=True)
            result["libraries"][name] = entry
            write_json(args.json, result)  # partial results survive an interrupted run
    return finish(result, args)


def merge(parts: list[dict]) -> dict:
    """One result from runs of separate libraries or seeds (e.g. in parallel processes).

    Commands are joined; the training seeds of one library and dose (the same series and
    baselines) are pooled and summarised again, and so are the LSMO case's seeds.
    """
    result = parts[0] | {"command": " && ".join(p["command"] for p in parts), "libraries": {}}
    for part in parts:
        for name, entry in part["libraries"].items():
            if name not in result["libraries"]:
                result["libraries"][name] = json.loads(json.dumps(entry))
                continue
            for dose, run in entry["doses"].items():
                pooled = result["libraries"][name]["doses"].setdefault(dose, run)
                if pooled is not run:
                    pooled["eelsprint"] |= run["eelsprint"]
                    pooled["eelsprint_summary"] = summarise(list(pooled["eelsprint"].values()))
        if part.get("lsmo"):
            if result.get("lsmo"):
                pooled = result["lsmo"]["per_seed"] | part["lsmo"]["per_seed"]
                result["lsmo"]["per_seed"] = dict(sorted(pooled.items(), key=lambda kv: int(kv[0])))
            else:
                result["lsmo"] = part["lsmo"]
    return result


def finish(result: dict, args: Any) -> dict:
    """Add the issue's conditions, write JSON and markdown, print the tables."""
    result["done_when"] = done_when(result)
    write_json(args.json, result)
    with atomic_write(args.markdown) as tmp:
        tmp.write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
