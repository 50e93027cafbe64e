"""Timing: the per-chunk profiler, the round-robin timer, and the attention and end-to-end benchmarks."""
