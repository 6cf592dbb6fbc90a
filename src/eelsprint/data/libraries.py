"""Fingerprint library files: CSV tables and the paper's MXene release (``.npy`` triplet).

Called by :func:`eelsprint.data.io.read_library`, which picks the reader by the path.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from eelsprint.data.spectra import Library, library_from_arrays
from eelsprint.exceptions import InputDataError, first_line

__all__ = ["MXENE_LABELS", "read_library_csv", "read_mxene_library"]

#: Class names of the labels 0..3 of the paper's MXene release.
MXENE_LABELS = ("F50", "F25", "F12.5", "F0")

PathLike = str | os.PathLike[str]


def read_library_csv(path: Path, min_classes: int = 2) -> Library:
    """A library from a CSV table: energy (eV) in the first column, one spectrum per further column."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputDataError(f"{path}: cannot read CSV file ({first_line(err)})") from None
    if len(rows) < 3 or len(rows[0]) < 1 + max(min_classes, 1):
        raise InputDataError(
            f"{path}: expected a header row (energy, label, label, ...) and at least two energy rows"
        )
    header = rows[0]
    values = np.empty((len(rows) - 1, len(header)))
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InputDataError(f"{path}: line {r} has {len(row)} columns, the header has {len(header)}")
        for c, cell in enumerate(row):
            try:
                values[r - 2, c] = float(cell)
            except ValueError:
                raise InputDataError(f"{path}: line {r}, column {c + 1}: {cell!r} is not a number") from None
    return Library(values[:, 1:].T, values[:, 0], np.array(header[1:], dtype=str), str(path), min_classes)


def read_mxene_library(directory: PathLike) -> Library:
    """Read the paper's release: ``MXene_DFT_Data.npy``, ``MXene_DFT_Labels.npy``, ``MXene_EELS_axis.npy``.

    Labels 0..3 become ``"F50"``, ``"F25"``, ``"F12.5"`` and ``"F0"``.

    Parameters
    ----------
    directory : str or path-like
        Folder holding the three ``.npy`` files.

    Returns
    -------
    Library
    """
    directory = Path(directory)
    arrays = {}
    for name in ("MXene_DFT_Data", "MXene_DFT_Labels", "MXene_EELS_axis"):
        file = directory / f"{name}.npy"
        if not file.is_file():
            raise InputDataError(f"{file}: file not found")
        try:
            arrays[name] = np.load(file, allow_pickle=False)
        except Exception as err:  # readers fail in many ways
            raise InputDataError(f"{file}: cannot read .npy file ({first_line(err)})") from None
    codes = np.asarray(arrays["MXene_DFT_Labels"]).ravel()
    if codes.dtype.kind not in "iu" or codes.min(initial=0) < 0 or codes.max(initial=0) >= len(MXENE_LABELS):
        raise InputDataError(
            f"{directory}: MXene_DFT_Labels.npy must hold integers 0..{len(MXENE_LABELS) - 1}"
        )
    labels = np.array([MXENE_LABELS[int(code)] for code in codes], dtype=str)
    return library_from_arrays(arrays["MXene_DFT_Data"], arrays["MXene_EELS_axis"], labels, str(directory))
