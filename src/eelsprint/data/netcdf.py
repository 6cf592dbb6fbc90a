"""NetCDF results: written whole in memory first, then atomically; read fully and closed.

Serialising to bytes before touching the disk means a full disk is an ordinary write
error on our own file (reported on one line, nothing left behind), never a crash inside
the HDF5 library.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from eelsprint.data.atomic import write_bytes
from eelsprint.exceptions import InputDataError, first_line

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["read_dataset", "write_dataset"]

PathLike = str | os.PathLike[str]


def write_dataset(ds: xr.Dataset, path: PathLike) -> None:
    """Write an ``xarray.Dataset`` as NetCDF-4 (engine ``h5netcdf``), atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        What to write.
    path : str or path-like
        Output file (``.nc``); replaced only once the whole file is written.

    Raises
    ------
    OutputError
        If the file cannot be written (permissions, disk full, a folder in its place).
    """
    data = ds.to_netcdf(engine="h5netcdf")  # bytes in memory
    write_bytes(path, data)


def read_dataset(path: PathLike) -> xr.Dataset:
    """Read a NetCDF file written by :func:`write_dataset` fully into memory and close it.

    Parameters
    ----------
    path : str or path-like
        The ``.nc`` file.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    InputDataError
        If the file is missing or not readable NetCDF.
    """
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: file not found" if not path.exists() else f"{path}: is not a file")
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return ds.load()
    except Exception as err:  # readers fail in many ways
        raise InputDataError(f"{path}: cannot read NetCDF file ({first_line(err)})") from None
