"""Benchmarks of rt against two baseline servers speaking the same /ws/odds subset.

See bench/README.md for how to run them and docs/performance.md for the results.
"""
