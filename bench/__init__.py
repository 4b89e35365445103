"""Benchmarks: ratios against the raw protocol libraries, measured in the same run."""
