"""Timing shared by the side-by-side scripts of this folder."""

import statistics
import time


def timed(repeats, f):
    """Median wall time of `repeats` calls of `f()`, after one warm-up call."""
    times = []
    for rep in range(repeats + 1):
        t = time.perf_counter()
        f()
        if rep > 0:
            times.append(time.perf_counter() - t)
    return statistics.median(times)
