"""Public reading and writing of spectra, libraries and results (see :mod:`eelsprint.data.io`).

Kept at the top level for users: ``from eelsprint.io import read_spectra, read_library``.
"""

from eelsprint.data.io import (
    HYPERSPY_SUFFIXES,
    MXENE_LABELS,
    as_spectra,
    library_from_arrays,
    read_dataset,
    read_library,
    read_mxene_library,
    read_spectra,
    spectra_from_array,
    spectra_from_signal,
    write_dataset,
)
from eelsprint.data.spectra import Library, Spectra

__all__ = [
    "HYPERSPY_SUFFIXES",
    "MXENE_LABELS",
    "Library",
    "Spectra",
    "as_spectra",
    "library_from_arrays",
    "read_dataset",
    "read_library",
    "read_mxene_library",
    "read_spectra",
    "spectra_from_array",
    "spectra_from_signal",
    "write_dataset",
]
