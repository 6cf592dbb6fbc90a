"""Public reading and writing of spectra, libraries and results (see :mod:`eelsprint.data.io`).

Kept at the top level for users: ``from eelsprint.io import read_spectra, read_library``;
``open_spectra`` opens a file lazily (out of core), ``read_result_store`` a Zarr result.
"""

from eelsprint.data.io import (
    HYPERSPY_SUFFIXES,
    MXENE_LABELS,
    as_spectra,
    library_from_arrays,
    open_spectra,
    read_dataset,
    read_library,
    read_mxene_library,
    read_spectra,
    spectra_from_array,
    spectra_from_signal,
    write_dataset,
)
from eelsprint.data.lazy import LazySpectra
from eelsprint.data.resultstore import read_result_store
from eelsprint.data.spectra import Library, Spectra

__all__ = [
    "HYPERSPY_SUFFIXES",
    "MXENE_LABELS",
    "LazySpectra",
    "Library",
    "Spectra",
    "as_spectra",
    "library_from_arrays",
    "open_spectra",
    "read_dataset",
    "read_library",
    "read_mxene_library",
    "read_result_store",
    "read_spectra",
    "spectra_from_array",
    "spectra_from_signal",
    "write_dataset",
]
