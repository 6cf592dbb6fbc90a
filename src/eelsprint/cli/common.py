"""What every command shares: the Typer app, common options, and argument parsers."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from eelsprint.config import Config
from eelsprint.exceptions import ConfigError, DoseShiftWarning, RepresentationWarning

__all__ = [
    "DataArg",
    "ModelOpt",
    "NavShapeOpt",
    "OverwriteOpt",
    "app",
    "model_warnings",
    "parse_nav_shape",
    "parse_window",
    "with_overrides",
]

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


def parse_nav_shape(text: str | None) -> tuple[int, ...] | None:
    """``"24,30,19"`` -> ``(24, 30, 19)``; a one-line ConfigError for anything else."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(
            f"--nav-shape must be positive integers separated by commas (e.g. 24,30,19), got {text!r}"
        )
    return tuple(int(p) for p in parts)


def with_overrides(config: Config, epochs: int | None, seed: int | None) -> Config:
    import dataclasses

    train = config.train
    if epochs is not None:
        train = dataclasses.replace(train, epochs=epochs, raw_epochs=epochs)
    if seed is not None:
        train = dataclasses.replace(train, seed=seed)
    return config.replace(train=train)


def parse_window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--window {text!r}: expected LO,HI in eV, e.g. 677,737") from None
    if not lo < hi:
        raise ConfigError(f"--window {text!r}: LO must be below HI")
    return lo, hi


@contextmanager
def model_warnings() -> Iterator[None]:
    """Print the model's own warnings (:class:`RepresentationWarning`, :class:`DoseShiftWarning`)
    as one ``warning: ...`` line each on stderr, once per message; others pass on unchanged."""
    own = (RepresentationWarning, DoseShiftWarning)
    with warnings.catch_warnings(record=True) as caught:
        for category in own:  # others keep the filters in force (an "error" filter still raises)
            warnings.simplefilter("always", category)
        yield
    seen = set()
    for w in caught:
        if not issubclass(w.category, own):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif str(w.message) not in seen:
            seen.add(str(w.message))
            typer.echo(f"warning: {w.message}", err=True)
