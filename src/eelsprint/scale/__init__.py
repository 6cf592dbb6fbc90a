"""Out-of-core and distributed classification: lazy Dask input, chunked resumable Zarr output, clusters.

:mod:`~eelsprint.scale.store` classifies lazy spectra chunk by chunk into a resumable Zarr
store; :mod:`~eelsprint.scale.cluster` runs the chunks on a ``dask.distributed`` cluster.
"""

__all__: list[str] = []
