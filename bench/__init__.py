"""Benchmarks: ``python -m bench`` runs the suite (see bench/RESULTS.md)."""
