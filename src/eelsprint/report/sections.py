"""The parts of an evaluation report: each computes its numbers and the section that shows them.

Called by :func:`eelsprint.report.build.build_report`; every part adds to one
``metrics`` dictionary (written as ``metrics.json``) and returns a
:class:`~eelsprint.report.html.Section`.
"""

from __future__ import annotations

from typing import Any

import arviz as az
import numpy as np

from eelsprint.data.preprocess import pca_denoise
from eelsprint.inference.pipeline import spectral_prior
from eelsprint.inference.sampling import (
    fraction_draws,
    fraction_intervals,
    sample_class_probabilities,
    to_inference_data,
)
from eelsprint.report import embedding, figures
from eelsprint.report.active import active_section
from eelsprint.report.baselines import DESCRIPTIONS, run_baselines
from eelsprint.report.html import Image, Section, Table
from eelsprint.report.inputs import ReportData
from eelsprint.report.scoring import TRUTH_KEYS
from eelsprint.report.truth import truth_sections

__all__ = ["MAX_MAP_FRAMES", "TERMS", "compute_sections"]

#: Per-pixel uncertainty terms of eelsprint, higher = less sure.
TERMS = ("entropy", "aleatoric", "epistemic", "var_from_encoder", "var_from_gp")
MAX_MAP_FRAMES = 8


def compute_sections(d: ReportData) -> tuple[dict[str, Any], list[Section], az.InferenceData]:
    """Run every part of the report; return (metrics, sections, posterior draws)."""
    d.step("classify")
    ds = d.clf.classify(d.x)
    proba = ds["proba"].values
    pred = ds["label"].values.astype(np.int64)
    mu, var = ds["latent_mean"].values, ds["latent_var"].values
    terms = {name: ds[name].values for name in TERMS} | {"1 - confidence": 1.0 - ds["confidence"].values}
    metrics: dict[str, Any] = {
        "n_pixels": len(d.x),
        "classes": d.classes,
        "frames": [{"name": f.name, "start": f.start, "shape": list(f.shape)} for f in d.frames],
        "has_truth": d.labels is not None,
        "integration": ds.attrs.get("integration", "fast"),
        "labels_from": ds.attrs.get("labels_from", "latent GP"),
    }

    d.step("posterior draws")
    cfg = d.config
    prior = spectral_prior(d.clf.diagnostics_)  # a model whose latent failed: labels from the spectra
    offset = None if prior is None else prior.log_proba(d.x, d.clf.library_)
    draws = sample_class_probabilities(
        d.clf.gp_, mu, var, cfg.n_draws, cfg.seed, progress=not d.bar.disable, offset=offset
    )
    frame_index = np.repeat(np.arange(len(d.frames)), [f.size for f in d.frames])
    idata = to_inference_data(
        draws,
        fraction_draws(draws, d.starts, cfg.seed),
        np.array(d.classes),
        d.names,
        constant={"frame_index": frame_index, "label": pred},
        attrs={"description": "eelsprint posterior draws of per-pixel class probabilities"},
    )
    sections = [Section("Summary"), _maps(d, pred, ds)]
    sections.append(_fractions(d, idata, metrics))
    sections.append(_uncertainty(d, ds, metrics))
    sections.append(active_section(d, ds, d.loop))

    d.step("baselines")
    baselines = {}
    if cfg.baselines:
        model_cfg = d.clf.config_
        baselines = run_baselines(
            d.x,
            d.clf.library_,
            n_components=model_cfg.preprocess.pca_components,
            latent_dim=model_cfg.model.latent_dim,
            nuisance=model_cfg.nuisance,
            seed=cfg.seed,
        )
    metrics["baselines"] = {name: {"description": DESCRIPTIONS[name]} for name in baselines}

    d.step("latent space")
    pca = embedding.pca_latents(d.x, mu.shape[-1], cfg.seed)
    sections.append(_latent(d, mu, pca, pred, {k: p.argmax(-1) for k, p in baselines.items()}, metrics))
    d.step("denoised spectra")
    decoded = embedding.decode(d.clf, mu)
    sections.append(_denoised(d, decoded, pred))
    sections.append(_ppc(d, decoded, metrics))

    d.step("ground truth")
    if d.labels is not None:  # accuracy, calibration and uncertainty quality go after the class maps
        sections[2:2] = truth_sections(d, proba, terms, baselines, metrics)
    else:
        for key in TRUTH_KEYS:
            metrics[key] = None
            for row in metrics["baselines"].values():
                row[key] = None
    sections[0] = _summary(metrics)
    sections.append(_notes())
    d.step("done")
    return metrics, sections, idata


def _maps(d: ReportData, pred: np.ndarray, ds: Any) -> Section:
    section = Section("Class maps")
    maps = [f.map(pred) for f in d.frames]
    section.blocks.append(
        Image(
            figures.class_maps(maps, d.names, d.classes, "eelsprint: most probable class"),
            "Most probable class of every pixel, frame by frame (the paper's Fig. 5).",
        )
    )
    if d.labels is not None:
        truth = [f.map(d.labels) for f in d.frames]
        section.blocks.append(
            Image(
                figures.class_maps(truth, d.names, d.classes, "ground truth"),
                "Ground-truth classes; grey: in no library class.",
            )
        )
    return section


def _fractions(d: ReportData, idata: az.InferenceData, metrics: dict[str, Any]) -> Section:
    hdi = d.config.hdi_prob
    iv = fraction_intervals(idata, hdi)
    metrics["hdi_prob"] = hdi
    metrics["class_fractions"] = {
        f.name: {
            c: {"mean": iv["mean"][i, k], "low": iv["low"][i, k], "high": iv["high"][i, k]}
            for k, c in enumerate(d.classes)
        }
        for i, f in enumerate(d.frames)
    }
    rows = [
        [
            f.name,
            *(
                f"{iv['mean'][i, k]:.3f} [{iv['low'][i, k]:.3f}, {iv['high'][i, k]:.3f}]"
                for k in range(len(d.classes))
            ),
        ]
        for i, f in enumerate(d.frames)
    ]
    return Section(
        "Class fractions",
        [
            Image(
                figures.fractions(d.names, iv["mean"], iv["low"], iv["high"], d.classes, hdi),
                f"Share of each frame's pixels per class: posterior mean and {hdi:.0%} highest-density "
                "interval (ArviZ az.hdi) over posterior draws of every pixel's label.",
            ),
            Table(["frame", *d.classes], rows, f"posterior mean [{hdi:.0%} HDI]"),
        ],
    )


def _uncertainty(d: ReportData, ds: Any, metrics: dict[str, Any]) -> Section:
    shown = d.frames[:MAX_MAP_FRAMES]
    rows = {
        "total entropy (nat)": [f.map(ds["entropy"].values) for f in shown],
        "aleatoric (nat)": [f.map(ds["aleatoric"].values) for f in shown],
        "epistemic (nat)": [f.map(ds["epistemic"].values) for f in shown],
        "encoder share": [f.map(ds["encoder_share"].values) for f in shown],
    }
    entropy = ds["entropy"].values
    share = [float((entropy[f.start : f.stop] > d.config.threshold).mean()) for f in d.frames]
    metrics["threshold"] = d.config.threshold
    metrics["share_above_threshold"] = share
    metrics["mean_uncertainty"] = {
        term: [float(ds[term].values[f.start : f.stop].mean()) for f in d.frames]
        for term in ("entropy", "aleatoric", "epistemic", "encoder_share")
    }
    caption = (
        "Total predictive entropy, its split into expected entropy (aleatoric) and mutual information "
        "(epistemic), and the share of the class functions' variance that comes from the encoder"
        + (f"; first {MAX_MAP_FRAMES} frames." if len(d.frames) > MAX_MAP_FRAMES else ".")
    )
    table = Table(
        ["frame", f"share with entropy > {d.config.threshold:g} nat", "mean entropy", "mean epistemic"],
        [
            [
                f.name,
                share[i],
                metrics["mean_uncertainty"]["entropy"][i],
                metrics["mean_uncertainty"]["epistemic"][i],
            ]
            for i, f in enumerate(d.frames)
        ],
    )
    return Section(
        "Uncertainty",
        [Image(figures.value_maps(rows, [f.name for f in shown], "uncertainty"), caption), table],
    )


def _latent(
    d: ReportData,
    mu: np.ndarray,
    pca: np.ndarray,
    pred: np.ndarray,
    others: dict[str, np.ndarray],
    metrics: dict[str, Any],
) -> Section:
    cfg = d.config

    def silhouettes(points: np.ndarray, labels: np.ndarray) -> list[float | None]:
        return embedding.silhouette_per_frame(points, labels, d.starts, cfg.silhouette_points, cfg.seed)

    metrics["silhouette_vae"], metrics["silhouette_pca"] = silhouettes(mu, pred), silhouettes(pca, pred)
    for name, labels in others.items():
        metrics["baselines"][name]["silhouette_vae"] = silhouettes(mu, labels)
        metrics["baselines"][name]["silhouette_pca"] = silhouettes(pca, labels)
    rng = np.random.default_rng(cfg.seed)
    subset = np.sort(rng.choice(len(mu), min(len(mu), cfg.tsne_points), replace=False))
    panels = {
        "VAE latents": embedding.tsne(mu[subset], cfg.seed),
        "principal components": embedding.tsne(pca[subset], cfg.seed),
    }
    loc, scale = embedding.library_latents(d.clf)
    dims = tuple(int(i) for i in np.argsort(mu.var(0))[::-1][:2])
    if len(dims) < 2:
        dims = (0, 0)
    return Section(
        "Latent space",
        [
            Image(
                figures.silhouettes(d.names, metrics["silhouette_vae"], metrics["silhouette_pca"]),
                "Silhouette score of the predicted classes per frame in the VAE latent space and in as many "
                "principal components (the paper's Fig. 7b); higher = better separated.",
            ),
            Table(
                ["frame", "silhouette VAE", "silhouette PCA"],
                [
                    [f.name, metrics["silhouette_vae"][i], metrics["silhouette_pca"][i]]
                    for i, f in enumerate(d.frames)
                ],
            ),
            Image(
                figures.tsne_panels(panels, pred[subset], d.classes),
                f"t-SNE (PCA initialisation) of {len(subset)} random pixels, coloured by predicted class "
                "(the paper's Fig. 7a).",
            ),
            Image(
                figures.library_latents(
                    mu, pred, loc, scale, d.clf.library_.class_index, d.classes, (dims[0], dims[1])
                ),
                "The fingerprint library's latent Gaussians (ellipses: 2 sd) over the data's latent means, "
                "in the two latent dimensions where the data vary most (the paper's Fig. 4).",
            ),
        ],
    )


def _denoised(d: ReportData, decoded: np.ndarray, pred: np.ndarray) -> Section:
    n = len(d.classes)
    lib_mean = d.clf.library_.class_means()
    pca = pca_denoise(d.x, d.clf.config_.preprocess.pca_components, d.config.seed)
    panels = {
        "VAE decoder": embedding.class_mean_sd(decoded, pred, n),
        "PCA": embedding.class_mean_sd(pca, pred, n),
    }
    return Section(
        "Denoised spectra",
        [
            Image(
                figures.denoised_spectra(d.clf.energy_, panels, lib_mean, d.classes),
                "Denoised spectra grouped by predicted class: mean and +-1 standard deviation, VAE decoder "
                "vs PCA reconstruction (the paper's Fig. 6); dashed: the library's class mean.",
            )
        ],
    )


def _ppc(d: ReportData, decoded: np.ndarray, metrics: dict[str, Any]) -> Section:
    stats = embedding.residual_stats(d.x, decoded, d.starts)
    metrics["posterior_predictive"] = stats.to_dict()
    pixel_rms = np.sqrt(((d.x - decoded) ** 2).mean(-1))
    picks = [int(np.argsort(pixel_rms)[int(q * (len(pixel_rms) - 1))]) for q in (0.1, 0.5, 0.9)]
    return Section(
        "Posterior-predictive check",
        [
            Image(
                figures.posterior_predictive(
                    d.clf.energy_,
                    d.x[picks],
                    decoded[picks],
                    stats.channel_mean,
                    stats.channel_sd,
                    [f"residual percentile {q}" for q in (10, 50, 90)],
                ),
                "Observed spectra and the VAE decoder's spectrum at the raw encoder's latent mean, for "
                "pixels at the 10th, 50th and 90th percentile of the residual; right: residual mean +- sd "
                "per channel.",
            ),
            Table(
                ["frame", "RMS residual", "relative RMS", "mean residual"],
                [
                    [f.name, stats.rms[i], stats.relative_rms[i], stats.mean[i]]
                    for i, f in enumerate(d.frames)
                ],
                f"Variance of the observed spectra explained by the decoded ones (R²): {stats.r2:.3f}",
            ),
        ],
    )


def _mean(values: Any) -> Any:
    if isinstance(values, list):
        numbers = [v for v in values if v is not None]
        return float(np.mean(numbers)) if numbers else None
    return values


def _summary(metrics: dict[str, Any]) -> Section:
    keys = [
        "accuracy",
        "macro_f1",
        "nll",
        "brier",
        "ece",
        "ood_auroc",
        "error_auroc",
        "silhouette_vae",
        "silhouette_pca",
    ]
    rows = [["eelsprint", *(_mean(metrics.get(k)) for k in keys)]]
    for name, row in metrics.get("ablations", {}).items():
        rows.append([f"eelsprint: {name}", *(_mean(row.get(k)) for k in keys)])
    for name, row in metrics["baselines"].items():
        rows.append([name, *(_mean(row.get(k)) for k in keys)])
    return Section(
        "Summary",
        [
            Table(
                ["method", *keys], rows, "silhouettes: mean over frames, of each method's predicted classes"
            ),
            *(f"{name}: {row['description']}" for name, row in metrics["baselines"].items()),
        ],
    )


def _notes() -> Section:
    return Section(
        "Notes",
        [
            "Accuracy, macro-F1, NLL, Brier and ECE are over pixels of a library class only; pixels in no "
            "library class enter the OOD AUROC and the confusion matrix's last row.",
            "ECE uses equal-mass bins (ece_equal_width in metrics.json: 15 equal-width bins).",
            "NLL clips probabilities at 1e-12: a one-hot baseline pays 27.6 nats for each error.",
            "Uncertainty AUROCs: 0.5 = no better than chance; one-hot baselines have constant entropy (0.5).",
            "Class-fraction intervals are highest-density intervals over posterior draws: each draw samples "
            "the encoder's latent, the GP's class functions and then a label for every pixel.",
        ],
    )
