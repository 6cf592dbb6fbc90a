"""Reference classifiers that eelsprint must beat on the same data."""

from __future__ import annotations

import numpy as np

from eelsprint.io import Library


def nearest_fingerprint(x: np.ndarray, library: Library) -> np.ndarray:
    """Class index of the library spectrum closest to each spectrum (least squares).

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
        Spectra on the library's energy axis.
    library : Library

    Returns
    -------
    ndarray of int, shape (n_spectra,)
        Index into ``library.classes``.
    """
    lib = library.spectra
    d2 = (x**2).sum(-1, keepdims=True) - 2 * x @ lib.T + (lib**2).sum(-1)
    return library.class_index[d2.argmin(-1)]
