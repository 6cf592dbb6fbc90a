"""The core commands: ``demo``, ``fit``, ``classify``, ``report``, ``export``, ``bench``, ``watch``."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from eelsprint.cli.common import (
    DataArg,
    ModelOpt,
    NavShapeOpt,
    OverwriteOpt,
    app,
    model_warnings,
    parse_nav_shape,
    parse_window,
    with_overrides,
)
from eelsprint.config import Config
from eelsprint.exceptions import ConfigError

__all__ = ["bench", "classify", "demo", "export_", "fit", "report", "watch"]


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the model, maps, figure and summary.")] = Path(
        "demo-out"
    ),
    frames: Annotated[int, typer.Option(help="Frames (temperatures) in the simulated series.")] = 6,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the VAE and the raw encoder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulation and of training.")] = 0,
) -> None:
    """Simulate an in-situ heating series, fit eelsprint, classify it and print a scored summary."""
    from eelsprint.demo import format_summary, run_demo

    config = with_overrides(Config(), epochs, seed)
    start = time.perf_counter()
    summary = run_demo(out, n_frames=frames, config=config, seed=seed)
    typer.echo(format_summary(summary))
    typer.echo(
        f"wrote {out}/ (model/, series.nc, maps.png, summary.json) in {time.perf_counter() - start:.0f} s"
    )


@app.command()
def fit(
    data: DataArg,
    library: Annotated[Path, typer.Option("--library", "-l", help="Library (.npz, .csv or MXene folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the VAE and the raw encoder.")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
    window: Annotated[
        str | None, typer.Option(help="LO,HI (eV): crop every DATA file to this range (all must cover it).")
    ] = None,
    subsample: Annotated[
        int | None,
        typer.Option(help="Out of core: train on N spectra spread over the frames (one DATA file)."),
    ] = None,
    chunk_size: Annotated[
        str, typer.Option(help="With --subsample: input bytes read and preprocessed at a time.")
    ] = "100MB",
    overwrite: OverwriteOpt = False,
) -> None:
    """Train the VAE, the raw encoder (unsupervised) and the GP classifier on DATA against LIBRARY."""
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.checks import join_inputs
    from eelsprint.data.io import open_spectra, read_library, read_spectra
    from eelsprint.data.outputs import check_output

    inputs = [*data, library, *([config] if config else [])]
    check_output(out, "model", overwrite=overwrite, inputs=inputs)
    cfg = with_overrides(Config.from_toml(config) if config else Config(), epochs, seed)
    lib = read_library(library)
    if subsample is not None and (len(data) != 1 or window):
        raise ConfigError("--subsample reads one DATA file chunk by chunk (without --window)")
    start = time.perf_counter()
    with model_warnings():
        if subsample is None:
            spectra = join_inputs([read_spectra(path) for path in data], parse_window(window))
            clf = FingerprintClassifier(config=cfg).fit(spectra, lib)
        else:
            from eelsprint.scale.run import parse_size
            from eelsprint.scale.train import fit_large

            batch = parse_size(chunk_size, "--chunk-size")
            large = fit_large(open_spectra(data[0], chunk_bytes=batch), lib, cfg, subsample, True, batch)
            clf = large.model
            typer.echo(f"PCA target on all {large.n_seen} spectra; trained on {large.n_subsample}")
    clf.save(out)
    d = clf.diagnostics_
    check, nuisance = d["library_check"], d["nuisance_estimate"]
    typer.echo(
        f"fitted on {d['n_spectra']} spectra, classes {', '.join(clf.classes_)}; "
        f"self-consistency {check['self_consistency']:.2f} (nearest fingerprint "
        f"{check['nearest_self_consistency']:.2f}); library probe latent {check['latent_accuracy']:.2f} / "
        f"PCA {check['pca_accuracy']:.2f}; data nuisance: noise {nuisance['noise_sd']:.3g}, "
        f"scale sd {nuisance['scale_sd']:.3f}, shift {nuisance['shift_ev']:.2f} eV, "
        f"tilt {nuisance['background_tilt']:.3f}; {time.perf_counter() - start:.0f} s -> {out}"
    )
    if d.get("nuisance_widened"):
        wider = ", ".join(f"{k} {v:.3g}" for k, v in d["nuisance_widened"].items())
        typer.echo(f"library augmentation widened to the data's estimate ([nuisance] estimate): {wider}")
    if d.get("spectral_prior"):
        prior = d["spectral_prior"]
        typer.echo(
            f"the latent failed its own library: labels come from the spectral fallback "
            f"({prior['design']} fit, temperature {prior['temperature']:.3g}; library copies "
            f"{prior['copies_accuracy']:.2f} correct) under a wide GP prior"
        )


@app.command()
def classify(
    data: DataArg,
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for OUT/<input stem>.nc or .zarr.")],
    mode: Annotated[
        str | None,
        typer.Option(help="'fast' (default), 'exact' (Monte Carlo) or 'head' (distilled, real-time)."),
    ] = None,
    nav_shape: NavShapeOpt = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="netcdf: in memory, one file; zarr: out of core, chunk by chunk, resumable."
        ),
    ] = "netcdf",
    resume: Annotated[
        bool, typer.Option("--resume", help="zarr: finish an interrupted store (same model and settings).")
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            envvar="DASK_SCHEDULER_ADDRESS",
            help="zarr: address of a dask.distributed scheduler (tcp://host:8786).",
        ),
    ] = None,
    memory_limit: Annotated[
        str | None, typer.Option(help="zarr, local: resident memory this process may use in all, e.g. 2GB.")
    ] = None,
    chunk_size: Annotated[
        str, typer.Option(help="zarr: input bytes per chunk (navigation axes only).")
    ] = "100MB",
    overwrite: OverwriteOpt = False,
) -> None:
    """Classify every DATA file with MODEL; one NetCDF result (or Zarr store) per input."""
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.config import check_choice
    from eelsprint.data.io import read_spectra, write_dataset
    from eelsprint.data.outputs import check_folder_output, check_stems

    grid = parse_nav_shape(nav_shape)
    check_choice("--format", fmt, ("netcdf", "zarr"))
    if fmt == "netcdf" and (resume or scheduler or memory_limit):
        raise ConfigError("--resume, --scheduler and --memory-limit write chunk by chunk: add --format zarr")
    if memory_limit and not scheduler:
        from eelsprint.scale.run import limit_malloc_arenas

        limit_malloc_arenas()  # before PyTorch's and Zarr's threads start, each with an arena of its own
    suffix = ".nc" if fmt == "netcdf" else ".zarr"
    check_stems(data)
    check_folder_output(out, [f"{path.stem}{suffix}" for path in data], overwrite=overwrite)
    clf = FingerprintClassifier.load(model, progress=fmt == "netcdf")  # zarr: a bar of chunks instead
    for path in data:
        start, target = time.perf_counter(), out / f"{path.stem}{suffix}"
        if fmt == "zarr":
            sizes = (memory_limit, chunk_size)
            with model_warnings():
                n, counts, what = _classify_zarr(clf, path, target, mode, grid, resume, scheduler, sizes)
        else:
            with model_warnings():
                ds = clf.classify(read_spectra(path, grid), mode=mode)
            write_dataset(ds, target)
            n, what = ds["label"].size, ""
            counts = [int((ds["label"] == i).sum()) for i in range(len(clf.classes_))]
        shown = ", ".join(f"{c} {k}" for c, k in zip(clf.classes_, counts, strict=True))
        typer.echo(f"{path}: {n} spectra{what} in {time.perf_counter() - start:.2f} s ({shown}) -> {target}")


def _classify_zarr(
    clf: Any, path: Path, target: Path, mode: str | None, grid: tuple[int, ...] | None, resume: bool,
    scheduler: str | None, sizes: tuple[str | None, str],
) -> tuple[int, list[int], str]:  # fmt: skip
    from eelsprint.scale.run import ScaleOptions, classify_file, parse_size

    memory_limit, chunk_size = sizes
    limit = parse_size(memory_limit, "--memory-limit") if memory_limit else None
    options = ScaleOptions(parse_size(chunk_size, "--chunk-size"), limit, scheduler, resume)
    run, counts = classify_file(clf, path, target, options, mode=mode, nav_shape=grid, log=typer.echo)
    done = f" ({run.computed} of {run.n_chunks} chunks computed now)" if run.skipped else ""
    return run.n_spectra, [int(c) for c in counts], done


@app.command()
def report(
    data: DataArg,
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.html and metrics.json.")],
    truth: Annotated[
        Path | None, typer.Option("--truth", "-t", help=".npz with `label` per pixel (-1: not in library).")
    ] = None,
    frames_axis: Annotated[
        int | None, typer.Option(help="Navigation axis of the frames (default: 0 for 3-D scans).")
    ] = None,
    threshold: Annotated[float, typer.Option(help="Entropy (nats) above which a pixel is uncertain.")] = 0.5,
    draws: Annotated[int, typer.Option(help="Posterior draws per pixel.")] = 100,
    baselines: Annotated[bool, typer.Option(help="Score the baselines too.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the report's random choices.")] = 0,
    nav_shape: NavShapeOpt = None,
    loop: Annotated[
        Path | None, typer.Option(help="Active-learning loop record (JSON) to show in the report.")
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Measure MODEL on DATA (against TRUTH if given): report.html, metrics.json, posterior.nc."""
    from eelsprint.data.outputs import REPORT_FILES, check_folder_output
    from eelsprint.report.build import ReportConfig, run_report

    check_folder_output(out, REPORT_FILES, overwrite=overwrite, report=True)
    config = ReportConfig(threshold=threshold, n_draws=draws, baselines=baselines, seed=seed)
    start = time.perf_counter()
    with model_warnings():
        metrics = run_report(
            data,
            model,
            out,
            truth,
            frames_axis=frames_axis,
            config=config,
            nav_shape=parse_nav_shape(nav_shape),
            loop=loop,
        )
    scores = ", ".join(f"{k} {metrics[k]:.3f}" for k in ("accuracy", "nll", "ece") if metrics[k] is not None)
    typer.echo(
        f"{metrics['n_pixels']} pixels in {len(metrics['frames'])} frames{': ' + scores if scores else ''}; "
        f"{time.perf_counter() - start:.0f} s -> {out}/report.html"
    )


@app.command("export")
def export_(
    model_dir: Annotated[Path, typer.Argument(help="Model directory written by `eelsprint fit`.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="pt2, onnx, torchscript or tensorrt.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Artefact directory to write.")],
    precision: Annotated[str, typer.Option(help="fp32, or fp16 (tensorrt only).")] = "fp32",
    aot: Annotated[bool, typer.Option(help="pt2: also compile with AOTInductor.")] = True,
    opt_batch: Annotated[int, typer.Option(help="Batch size TensorRT tunes for.")] = 512,
    max_batch: Annotated[int, typer.Option(help="Largest batch the artefact accepts.")] = 4096,
    overwrite: OverwriteOpt = False,
) -> None:
    """Export MODEL_DIR's real-time graph (encoder + uncertainty head), checked on a probe batch."""
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.outputs import check_output
    from eelsprint.realtime.export import export

    check_output(out, "export", overwrite=overwrite, inputs=[model_dir])
    start = time.perf_counter()
    clf = FingerprintClassifier.load(model_dir, progress=False)
    exported = export(clf, fmt, out, precision=precision, aot=aot, batch=(1, opt_batch, max_batch))
    kind = f"{fmt} (AOTInductor)" if exported.meta.get("aoti") else fmt
    tol = exported.meta["tolerance"]
    typer.echo(
        f"exported {kind} {precision} in {time.perf_counter() - start:.0f} s -> {out}; outputs match the "
        f"PyTorch model on the probe batch (max |dp| {exported.max_diff['proba']:.1e}, "
        f"tolerance {tol['atol']:g} + {tol['rtol']:g}*|ref|)"
    )
    if "aoti_error" in exported.meta:
        typer.echo(f"no AOTInductor package ({exported.meta['aoti_error']}); model.pt2 runs instead")


@app.command()
def bench(
    model: Annotated[
        Path | None, typer.Option("--model", "-m", help="Model directory (default: shipped).")
    ] = None,
    n: Annotated[int, typer.Option(help="Spectra to classify.")] = 13680,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON.")] = None,
    repeats: Annotated[int, typer.Option(help="Timed passes per pipeline (medians reported).")] = 5,
    formats: Annotated[
        str, typer.Option(help="CPU export formats to time, comma-separated.")
    ] = "pt2,onnx,torchscript",
    aot: Annotated[bool, typer.Option(help="Compile the pt2 export with AOTInductor.")] = True,
    paper_samples: Annotated[int, typer.Option(help="Paper-style GP: samples per fingerprint.")] = 100,
) -> None:
    """Time every inference path side by side on this machine (the paper-style pipeline included)."""

    from eelsprint.bench.run import BenchConfig, format_table, run_bench
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.atomic import write_json
    from eelsprint.data.store import default_model_path

    names = tuple(f.strip() for f in formats.split(",") if f.strip())
    config = BenchConfig(n=n, repeats=repeats, formats=names, aot=aot, paper_samples=paper_samples)
    path = model or default_model_path()
    typer.echo(f"model: {path}")
    clf = FingerprintClassifier.load(path, progress=False)
    result = run_bench(clf, config, log=typer.echo)
    result["command"] = "eelsprint " + " ".join(sys.argv[1:])
    typer.echo(format_table(result))
    if json_path is not None:
        write_json(json_path, result)
        typer.echo(f"-> {json_path}")


@app.command()
def watch(
    directory: Annotated[Path, typer.Argument(help="Folder the acquisition writes spectrum images into.")],
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for OUT/<file stem>.nc.")],
    mode: Annotated[
        str | None, typer.Option(help="'head' (default if the model has one), 'fast' or 'exact'.")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Classify what is there, then exit.")] = False,
    settle: Annotated[
        float, typer.Option(help="Seconds a file must stay unchanged to count as complete.")
    ] = 1.0,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the folder.")] = 0.25,
    nav_shape: NavShapeOpt = None,
) -> None:
    """Classify each new spectrum-image file in DIRECTORY as it appears; bad files are reported, skipped."""
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.realtime.watch import watch as watch_folder

    grid = parse_nav_shape(nav_shape)
    clf = FingerprintClassifier.load(model, progress=False)
    counts = {"done": 0, "skipped": 0}
    if not once:
        typer.echo(f"watching {directory} (Ctrl-C to stop)")
    try:
        events = watch_folder(
            directory, clf, out, once=once, mode=mode, nav_shape=grid, poll_s=poll, settle_s=settle
        )
        for event in events:
            counts[event.status] += 1
            typer.echo(event.describe(), err=event.status == "skipped")
    except KeyboardInterrupt:
        typer.echo("stopped")
    typer.echo(f"{counts['done']} file(s) classified, {counts['skipped']} skipped")
