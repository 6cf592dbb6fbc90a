"""Exception types raised at eelsprint's public boundary.

Every error a user can cause is an :class:`EelsprintError`; the command line
prints its message on one line and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DoseShiftWarning",
    "EelsprintError",
    "ExportError",
    "InputDataError",
    "ModelFileError",
    "NotFittedError",
    "first_line",
    "typed_first_line",
]


def first_line(err: BaseException) -> str:
    """First non-empty line of an exception's message, or its type name: the reason in a one-line error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def typed_first_line(err: BaseException) -> str:
    """``"TypeName: first line"``: the reason when the exception's type says what failed (upstream errors)."""
    name = type(err).__name__
    return f"{name}: {first_line(err)}" if str(err).strip() else name


class EelsprintError(Exception):
    """Base class of every error eelsprint raises on purpose."""


class InputDataError(EelsprintError, ValueError):
    """A data or library file is missing, unreadable or holds bad values."""


class ConfigError(EelsprintError, ValueError):
    """A configuration value or file is invalid."""


class ModelFileError(EelsprintError, OSError):
    """A model directory is missing, incomplete, tampered with or from another version."""


class NotFittedError(EelsprintError, AttributeError):
    """An estimator was used before ``fit``."""


class OutputError(EelsprintError, OSError):
    """An output cannot be written: it would replace what eelsprint did not write, or the write failed."""


class ExportError(EelsprintError, RuntimeError):
    """An export format is unavailable here or its outputs do not match the model."""


class DoseShiftWarning(UserWarning):
    """The data's noise level differs from the fitted data's: the probabilities are calibrated at
    the fitted dose (underconfident at a higher dose, overconfident at a lower one)."""


class RepresentationWarning(UserWarning):
    """The fitted latent cannot separate library classes that the raw spectra (or PCA) separate."""
