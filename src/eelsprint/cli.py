"""Command line: ``eelsprint demo | fit | classify``.

Errors a user can cause print one line naming the file and the problem and
exit with status 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from eelsprint.config import Config
from eelsprint.exceptions import EelsprintError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Calibrated, uncertainty-aware fingerprinting of noisy in-situ STEM-EELS spectrum images.",
)

DataArg = Annotated[list[Path], typer.Argument(help="Spectrum files (.hspy, .dm3, .dm4, .msa, .npz).")]
ModelOpt = Annotated[Path, typer.Option("--model", "-m", help="Model directory written by `eelsprint fit`.")]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the model, maps, figure and summary.")] = Path("demo-out"),
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
    typer.echo(f"wrote {out}/ (model/, series.nc, maps.png, summary.json) in {time.perf_counter() - start:.0f} s")


@app.command()
def fit(
    data: DataArg,
    library: Annotated[Path, typer.Option("--library", "-l", help="Library (.npz, .csv or MXene folder).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the VAE and the raw encoder.")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed.")] = None,
) -> None:
    """Train the VAE, the raw encoder (unsupervised) and the GP classifier on DATA against LIBRARY."""
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.io import Spectra, read_library, read_spectra
    from eelsprint.preprocess import resample

    cfg = _with_overrides(Config.from_toml(config) if config else Config(), epochs, seed)
    lib = read_library(library)
    parts = [read_spectra(path) for path in data]
    first = parts[0]
    flat = [resample(p, first.energy).flat() if i else p.flat() for i, p in enumerate(parts)]
    spectra = Spectra(np.concatenate(flat), first.energy, ", ".join(str(p) for p in data))
    start = time.perf_counter()
    clf = FingerprintClassifier(config=cfg).fit(spectra, lib)
    clf.save(out)
    d = clf.diagnostics_
    typer.echo(
        f"fitted on {d['n_spectra']} spectra, classes {', '.join(clf.classes_)}; "
        f"latent KL {d['kl_total']:.1f} nats ({d['active_dims']} active dims); "
        f"{time.perf_counter() - start:.0f} s -> {out}"
    )


@app.command()
def classify(
    data: DataArg,
    model: ModelOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for OUT/<input stem>.nc.")],
    mode: Annotated[str | None, typer.Option(help="'fast' (default) or 'exact' (Monte Carlo).")] = None,
) -> None:
    """Classify every DATA file with MODEL; one NetCDF result per input."""
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.io import read_spectra, write_dataset

    clf = FingerprintClassifier.load(model)
    for path in data:
        start = time.perf_counter()
        ds = clf.classify(read_spectra(path), mode=mode)
        target = out / f"{path.stem}.nc"
        write_dataset(ds, target)
        counts = ", ".join(f"{c} {int((ds['label'] == i).sum())}" for i, c in enumerate(clf.classes_))
        typer.echo(f"{path}: {ds['label'].size} spectra in {time.perf_counter() - start:.2f} s ({counts}) -> {target}")


def _with_overrides(config: Config, epochs: int | None, seed: int | None) -> Config:
    import dataclasses

    train = config.train
    if epochs is not None:
        train = dataclasses.replace(train, epochs=epochs, raw_epochs=epochs)
    if seed is not None:
        train = dataclasses.replace(train, seed=seed)
    return config.replace(train=train)


def main() -> None:
    """Entry point: run the app, turning eelsprint errors into one line and exit status 1."""
    try:
        app()
    except EelsprintError as err:
        if "--debug" in sys.argv:
            raise
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)
