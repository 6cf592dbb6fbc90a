"""Benchmarks: every inference path timed side by side (``eelsprint bench``)."""

__all__: list[str] = []
