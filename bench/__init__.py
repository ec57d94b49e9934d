"""meshlet benchmark harness: direct vs meshlet vs nginx vs haproxy sidecar pairs.

Run as root from the repository root: `python -m bench.run` (or `python bench/run.py`).
See docs/benchmarks.md.
"""
