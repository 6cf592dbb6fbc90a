"""Data layer: spectra containers, files, preprocessing, augmentation, simulation, model directories.

Only :mod:`eelsprint.data.io` touches HyperSpy, RosettaSciIO and spectrum files.
"""

__all__: list[str] = []
