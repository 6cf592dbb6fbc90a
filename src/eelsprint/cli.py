"""Command line: ``eelsprint demo | fit | classify | report | export | bench | watch``.

Errors a user can cause print one line naming the file and the problem and
exit with status 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import click
import typer

from eelsprint.config import Config
from eelsprint.exceptions import ConfigError, EelsprintError, RepresentationWarning, first_line

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Calibrated, uncertainty-aware fingerprinting of noisy in-situ STEM-EELS spectrum images.",
)

DataArg = Annotated[list[Path], typer.Argument(help="Spectrum files (.hspy, .dm3, .dm4, .msa, .npz).")]
ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Model directory written by `eelsprint fit`.")]
NavShapeOpt = Annotated[
    str | None,
    typer.Option(
        "--nav-shape",
        help="Scan grid of each input in numpy order, e.g. 24,30,19 (frame, y, x) for a flat file "
        "of 13,680 spectra. Default: as stored, or the .npz's `shape` array.",
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing output even if eelsprint did not write it.")
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


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

    config = _with_overrides(Config(), epochs, seed)
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
    overwrite: OverwriteOpt = False,
) -> None:
    """Train the VAE, the raw encoder (unsupervised) and the GP classifier on DATA against LIBRARY."""
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.checks import join_inputs
    from eelsprint.data.io import read_library, read_spectra
    from eelsprint.data.outputs import check_output

    inputs = [*data, library, *([config] if config else [])]
    check_output(out, "model", overwrite=overwrite, inputs=inputs)
    cfg = _with_overrides(Config.from_toml(config) if config else Config(), epochs, seed)
    lib = read_library(library)
    spectra = join_inputs([read_spectra(path) for path in data], _window(window))
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RepresentationWarning)
        clf = FingerprintClassifier(config=cfg).fit(spectra, lib)
    for w in caught:  # the model's own warnings are one line on stderr, others pass on unchanged
        if issubclass(w.category, RepresentationWarning):
            typer.echo(f"warning: {w.message}", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
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


@app.command()
def classify(
    data: DataArg,
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for OUT/<input stem>.nc.")],
    mode: Annotated[
        str | None,
        typer.Option(help="'fast' (default), 'exact' (Monte Carlo) or 'head' (distilled, real-time)."),
    ] = None,
    nav_shape: NavShapeOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Classify every DATA file with MODEL; one NetCDF result per input."""
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.io import read_spectra, write_dataset
    from eelsprint.data.outputs import check_folder_output, check_stems

    grid = _nav_shape(nav_shape)
    check_stems(data)
    check_folder_output(out, [f"{path.stem}.nc" for path in data], overwrite=overwrite)
    clf = FingerprintClassifier.load(model)
    for path in data:
        start = time.perf_counter()
        ds = clf.classify(read_spectra(path, grid), mode=mode)
        target = out / f"{path.stem}.nc"
        write_dataset(ds, target)
        counts = ", ".join(f"{c} {int((ds['label'] == i).sum())}" for i, c in enumerate(clf.classes_))
        typer.echo(
            f"{path}: {ds['label'].size} spectra in {time.perf_counter() - start:.2f} s "
            f"({counts}) -> {target}"
        )


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
    overwrite: OverwriteOpt = False,
) -> None:
    """Measure MODEL on DATA (against TRUTH if given): report.html, metrics.json, posterior.nc."""
    from eelsprint.data.outputs import REPORT_FILES, check_folder_output
    from eelsprint.report.build import ReportConfig, run_report

    check_folder_output(out, REPORT_FILES, overwrite=overwrite, report=True)
    config = ReportConfig(threshold=threshold, n_draws=draws, baselines=baselines, seed=seed)
    start = time.perf_counter()
    metrics = run_report(
        data, model, out, truth, frames_axis=frames_axis, config=config, nav_shape=_nav_shape(nav_shape)
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

    grid = _nav_shape(nav_shape)
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


def _nav_shape(text: str | None) -> tuple[int, ...] | None:
    """``"24,30,19"`` -> ``(24, 30, 19)``; a one-line ConfigError for anything else."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"--nav-shape must be positive integers separated by commas (e.g. 24,30,19), got {text!r}"
        )
    return tuple(int(p) for p in parts)


def _with_overrides(config: Config, epochs: int | None, seed: int | None) -> Config:
    import dataclasses

    train = config.train
    if epochs is not None:
        train = dataclasses.replace(train, epochs=epochs, raw_epochs=epochs)
    if seed is not None:
        train = dataclasses.replace(train, seed=seed)
    return config.replace(train=train)


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--window {text!r}: expected LO,HI in eV, e.g. 677,737") from None
    if not lo < hi:
        raise ConfigError(f"--window {text!r}: LO must be below HI")
    return lo, hi


_received: list[int] = []


def _interrupt(signum: int, frame: object) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def main() -> None:
    """Entry point: one line and exit status 1 for every error a user can cause or meet.

    ``--debug`` shows the traceback instead. SIGTERM is handled like Ctrl-C: temporary
    files are removed and the command exits with 128 + the signal number.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    debug = "--debug" in sys.argv
    try:
        code = app(standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        code = 130
    except click.ClickException as err:  # usage errors: click's own message, exit 2
        err.show()
        sys.exit(err.exit_code)
    except (EelsprintError, OSError) as err:
        if debug:
            raise
        if isinstance(err, EelsprintError):
            message = first_line(err)
        else:  # an OSError we did not anticipate: still one line naming the file
            message = f"{err.filename or 'eelsprint'}: {err.strerror or first_line(err)}"
        typer.echo(f"error: {message}", err=True)
        sys.exit(1)
    if code == 130:  # Typer turns Ctrl-C (and so our SIGTERM) into exit code 130
        number = _received[-1] if _received else signal.SIGINT
        name = signal.Signals(number).name
        typer.echo(f"error: interrupted by {name}; nothing half-written was left", err=True)
        sys.exit(128 + number)
    sys.exit(code if isinstance(code, int) else 0)
