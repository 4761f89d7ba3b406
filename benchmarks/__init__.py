"""Benchmarks of Tidings at a million customers: `python -m benchmarks.run` (or `make bench`).

Scale runs live here, never in the pytest suite: they measure, they do not assert.
"""
