"""Spectra that stay on disk: a Dask array chunked along the navigation axes only.

Every spectrum lives whole in one chunk (a chunk split along energy would let a
step that needs the whole spectrum see only part of it, silently), and chunks are
sized by bytes. :meth:`LazySpectra.block` reads one chunk into an ordinary
:class:`~eelsprint.data.spectra.Spectra` (validated there: finite values), so
everything downstream runs unchanged, one chunk at a time.

The file readers for plain arrays (``.npz``, Zarr, NetCDF) are here; HyperSpy files
are opened by :func:`eelsprint.data.io.open_spectra`, which dispatches to these.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eelsprint.data.spectra import NavAxes, Spectra, _check_energy
from eelsprint.exceptions import InputDataError, first_line

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "LazySpectra",
    "Region",
    "batch_grid",
    "chunk_regions",
    "nav_chunks",
    "open_array_file",
]

#: Default bytes of spectra per chunk (the input's own dtype).
DEFAULT_CHUNK_BYTES = 100 * 2**20

#: One chunk: a slice per navigation axis.
Region = tuple[slice, ...]


def nav_chunks(nav_shape: tuple[int, ...], spectrum_bytes: int, chunk_bytes: int) -> tuple[int, ...]:
    """Chunk sizes along the navigation axes so that a chunk holds about ``chunk_bytes``.

    Trailing axes are kept whole while they fit; the first that does not is split, and the
    axes before it get chunks of 1 (a chunk is at least one spectrum).

    >>> nav_chunks((100, 256, 256), 2048 * 4, 100 * 2**20)  # 0.5 GB frames: 6 chunks of rows each
    (1, 43, 256)
    >>> nav_chunks((10, 64, 64), 1000, 50_000_000)
    (10, 64, 64)
    """
    if chunk_bytes < 1:
        raise InputDataError(f"chunk size must be at least 1 byte, got {chunk_bytes}")
    budget = max(1, chunk_bytes // max(spectrum_bytes, 1))  # spectra per chunk
    chunks: list[int] = []
    for size in reversed(nav_shape):
        take = max(1, min(size, budget))
        take = -(-size // -(-size // take))  # even chunks: ceil(size / number of chunks)
        chunks.insert(0, take)
        budget = budget // size if take == size else 1
    return tuple(chunks)


def batch_grid(
    nav_shape: tuple[int, ...], spectrum_bytes: int, batch_bytes: int
) -> tuple[tuple[int, ...], ...]:
    """Chunk sizes per navigation axis (Dask's ``chunks``) for batches of about ``batch_bytes``.

    >>> batch_grid((4, 10), 100, 1000)
    ((1, 1, 1, 1), (10,))
    """
    sizes = nav_chunks(nav_shape, spectrum_bytes, batch_bytes)
    return tuple((s,) * (n // s) + ((n % s,) if n % s else ()) for n, s in zip(nav_shape, sizes, strict=True))


def chunk_regions(chunks: tuple[tuple[int, ...], ...]) -> list[Region]:
    """Every chunk of a grid (sizes along each axis, as Dask's ``chunks``) as slices, in C order."""
    bounds = [np.cumsum((0, *sizes)) for sizes in chunks]
    if not bounds:  # a single spectrum
        return [()]
    grid = np.indices([len(b) - 1 for b in bounds]).reshape(len(bounds), -1).T
    return [tuple(slice(int(b[i]), int(b[i + 1])) for b, i in zip(bounds, g, strict=True)) for g in grid]


def _aligned(work: int, stored: int) -> int:
    """A chunk size along one axis that reads every stored chunk once: ``stored`` or a multiple."""
    return stored if work <= stored else work // stored * stored


@dataclass(frozen=True, eq=False)
class LazySpectra(NavAxes):
    """Spectra as a Dask array of shape ``(*nav_shape, n_channels)``, not yet read.

    Attributes
    ----------
    data : dask.array.Array
        Intensities; chunked along navigation only once :meth:`rechunk` has run.
    energy : numpy.ndarray
        Energy of each channel (eV), strictly increasing.
    source : str
        Where the spectra come from (a file name), used in error messages.
    stored : tuple of int or None
        Navigation sizes of the chunks the file decodes whole (compressed Zarr, chunked
        NetCDF), to which :meth:`rechunk` aligns the chunks so that each is decoded once;
        ``None`` where any slice reads only itself (memory-mapped files).
    """

    data: Any
    energy: np.ndarray
    source: str = "<array>"
    stored: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        import dask.array as da

        data = self.data if isinstance(self.data, da.Array) else da.from_array(self.data)
        if data.dtype.kind not in "biuf" or data.ndim < 1:
            raise InputDataError(f"{self.source}: spectra must be real numbers with an energy axis")
        energy = np.asarray(self.energy, dtype=np.float64)
        if data.ndim >= 2 and data.shape[-1] == 1 and energy.size == data.shape[-2]:
            data = data[..., 0]
        _check_energy(energy, data.shape[-1], self.source)
        if data.size == 0:
            raise InputDataError(f"{self.source}: holds no spectra (navigation shape {data.shape[:-1]})")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "energy", energy)
        if self.stored is not None and len(self.stored) != data.ndim - 1:
            object.__setattr__(self, "stored", None)  # not on this grid (e.g. a single spectrum)

    @property
    def stored_nbytes(self) -> int:
        """Bytes of one stored chunk that is decoded whole (0 without :attr:`stored`)."""
        if self.stored is None:
            return 0
        return int(np.prod(self.stored)) * self.n_channels * self.data.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the whole series in its stored dtype."""
        return int(self.data.nbytes)

    def with_nav_shape(self, nav_shape: tuple[int, ...]) -> LazySpectra:
        """The same spectra on another scan grid (see :meth:`Spectra.with_nav_shape`)."""
        self._check_grid(nav_shape)
        data = self.data.reshape(*nav_shape, self.n_channels, merge_chunks=True)
        stored = self.stored if tuple(nav_shape) == self.nav_shape else None
        return LazySpectra(data, self.energy, self.source, stored)

    def rechunk(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> LazySpectra:
        """Chunks of about ``chunk_bytes`` along navigation; each spectrum whole in one chunk.

        With :attr:`stored` chunks, every chunk is a whole number of them (at least one, so a
        chunk may be larger than ``chunk_bytes``: classify it in batches). Rechunk the file's
        own chunks (``open_spectra(..., chunk_bytes=None)``): rechunking again reads each
        chunk of the first rechunking whole.
        """
        sizes = nav_chunks(self.nav_shape, self.n_channels * self.data.dtype.itemsize, chunk_bytes)
        if self.stored is not None:
            sizes = tuple(_aligned(w, s) for w, s in zip(sizes, self.stored, strict=True))
        return LazySpectra(self.data.rechunk((*sizes, -1)), self.energy, self.source, self.stored)

    @property
    def chunk_nbytes(self) -> int:
        """Bytes of the largest chunk."""
        spectra = np.prod([max(sizes) for sizes in self.data.chunks[:-1]]) if self.nav_shape else 1
        return int(spectra) * self.n_channels * self.data.dtype.itemsize

    def regions(self) -> list[Region]:
        """Every chunk as a tuple of navigation slices, in C order."""
        return chunk_regions(self.data.chunks[:-1])

    def read(self, region: Region) -> np.ndarray:
        """The raw values (stored dtype, not checked) of one chunk or any navigation slices.

        Raises
        ------
        InputDataError
            If the file cannot be read there.
        """
        try:
            return np.asarray(self.data[region].compute(scheduler="synchronous"))  # no thread pool
        except Exception as err:  # readers fail in many ways
            where = ", ".join(f"{s.start}:{s.stop}" for s in region)
            reason = first_line(err)
            raise InputDataError(f"{self.source}: cannot read spectra [{where}] ({reason})") from None

    def block(self, region: Region) -> Spectra:
        """Read one chunk (any navigation slices) into memory as :class:`Spectra`.

        Raises
        ------
        InputDataError
            If the file cannot be read there, or the chunk holds NaN/inf.
        """
        return Spectra(self.read(region), self.energy, self.source)

    def blocks(self, batch_bytes: int | None = None) -> Iterator[tuple[Region, Spectra]]:
        """Every chunk in turn, read when asked for (each chunk once).

        With ``batch_bytes``, a larger chunk comes in batches of about that many bytes (their
        regions in the whole series), so that only the raw chunk is held whole.
        """
        for region in self.regions():
            values = self.read(region)
            if batch_bytes is None or values.nbytes <= batch_bytes:
                yield region, Spectra(values, self.energy, self.source)
                continue
            grid = batch_grid(values.shape[:-1], self.n_channels * values.itemsize, batch_bytes)
            for part in chunk_regions(grid):
                where = tuple(
                    slice(r.start + q.start, r.start + q.stop) for r, q in zip(region, part, strict=True)
                )
                yield where, Spectra(values[part], self.energy, self.source)


def _npz_member(path: Path, name: str) -> Any:
    """Array ``name`` of an ``.npz``: memory-mapped when stored uncompressed, else read whole."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            fmt = np.lib.format
            header = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(member)
            header_len = member.tell()
    if info.compress_type != zipfile.ZIP_STORED:
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
            return np.asarray(npz[name])
    with path.open("rb") as handle:  # the member's data start after its local file header
        handle.seek(info.header_offset + 26)
        extra = int.from_bytes(handle.read(2), "little") + int.from_bytes(handle.read(2), "little")
    shape, fortran, dtype = header
    offset = info.header_offset + 30 + extra + header_len
    return np.memmap(path, dtype, "r", offset, shape, order="F" if fortran else "C")


def open_array_file(path: Path) -> tuple[Any, np.ndarray, tuple[int, ...] | None, tuple[int, ...] | None]:
    """``(x, energy, shape, stored)`` of an ``.npz``, Zarr store or NetCDF file with ``x`` and ``energy``.

    ``x`` is memory-mapped (uncompressed ``.npz``) or a Dask array (Zarr, NetCDF); ``shape``
    is the optional scan grid (``None`` without one); ``stored`` the navigation sizes of the
    chunks ``x`` is stored in (Zarr, chunked NetCDF; ``None`` otherwise), each decoded whole.

    Raises
    ------
    InputDataError
        Unreadable file, or no ``x`` / ``energy`` in it.
    """
    suffix, stored = path.suffix.lower(), None
    try:
        if suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                names = {n.removesuffix(".npy") for n in archive.namelist()}
            found = sorted(names)
            arrays = {k: _npz_member(path, k) for k in ("x", "energy", "shape") if k in names}
        elif suffix == ".zarr":  # Zarr itself: Xarray's lazy indexing around it costs ~9 chunks of memory
            import dask.array as da
            import zarr

            group = zarr.open_group(path, mode="r")
            found = sorted(group.array_keys())
            arrays = {k: group[k] for k in ("x", "energy", "shape") if k in found}
            if "x" in arrays:
                stored = arrays["x"].chunks
                arrays["x"] = da.from_zarr(arrays["x"])
            arrays.update({k: np.asarray(arrays[k][...]) for k in ("energy", "shape") if k in arrays})
        else:
            import xarray as xr

            with warnings.catch_warnings():  # a file without _FillValue conventions is fine
                warnings.simplefilter("ignore", RuntimeWarning)
                opened = xr.open_dataset(path, engine="h5netcdf", chunks={})
            found = sorted(map(str, opened.variables))
            arrays = {k: opened[k].data for k in ("x", "energy", "shape") if k in opened.variables}
            if "x" in opened.variables:
                stored = opened["x"].encoding.get("chunksizes")
    except Exception as err:  # readers fail in many ways
        raise InputDataError(f"{path}: cannot read {suffix} file ({first_line(err)})") from None
    missing = [k for k in ("x", "energy") if k not in arrays]
    if missing:
        raise InputDataError(f"{path}: missing array(s) {missing}; found {found}")
    shape = None
    if "shape" in arrays:
        shape = tuple(int(n) for n in np.asarray(arrays["shape"]).ravel())
    nav = tuple(int(n) for n in stored[:-1]) if stored else None
    return arrays["x"], np.asarray(arrays["energy"]), shape, nav
