"""M7 box-model throughput from Python (issue 18): `gradlab.aerosol.M7().step` on [N, 33] cells,
and the cost of calling it from Python.

Cells: `gradlab.aerosol.sample_cells(N, seed=2024)` (the spin-up sampler of the Rust
`box_model` bench and `m7-generate`), float64, C order; the default M7 configuration (Δt = 720 s,
all processes). Workloads (median of REPEATS after one warm-up):
- `batch`: one `step` call on all N cells → cells/s;
- `batch_first_L`: one `step` call on the first L cells;
- `loop1`: `step(cells[i:i+1])` for each of those L cells (one Python call per cell) →
  µs per call and cells/s;
- per-call overhead ≈ (µs per single-cell call) − (µs per cell of `batch_first_L`, the same
  cells in one call).
The binding has no thread argument: the batch call spreads rows over rayon's pool, whose size
is RAYON_NUM_THREADS read when the pool starts, so py_m7.sh runs one process per thread count.
One JSON line per workload, then a summary line.

usage: py_m7.py [N=20000] [L=2000] [REPEATS=5]
"""

import json
import os
import sys

import numpy as np
from _timing import timed

import gradlab
from gradlab.aerosol import M7, sample_cells


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    loop = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    threads = os.environ.get("RAYON_NUM_THREADS", "all")
    cells = np.ascontiguousarray(sample_cells(n, seed=2024), dtype=np.float64)
    m7 = M7()
    out = m7.step(cells)
    assert out.shape == (n, 58) and np.isfinite(out).all()
    # the single-cell calls give the batch call's rows
    rows = [m7.step(cells[i : i + 1]) for i in range(min(loop, 50))]
    np.testing.assert_array_equal(np.concatenate(rows), out[: len(rows)])

    base = {"impl": "gradlab-py", "gradlab": getattr(gradlab, "__version__", "?"), "threads": threads,
            "water": m7.config.get("water"), "fidelity": m7.config.get("fidelity"), "dt": m7.config.get("dt")}
    s_batch = timed(repeats, lambda: m7.step(cells))
    line = {**base, "work": "batch", "cells": n, "median_s": s_batch, "cells_per_s": n / s_batch}
    print(json.dumps(line), flush=True)
    first = np.ascontiguousarray(cells[:loop])
    s_first = timed(repeats, lambda: m7.step(first))
    line = {**base, "work": "batch_first_L", "cells": loop, "median_s": s_first, "cells_per_s": loop / s_first}
    print(json.dumps(line), flush=True)
    singles = [cells[i : i + 1] for i in range(loop)]

    def loop1():
        for c in singles:
            m7.step(c)

    s_loop = timed(repeats, loop1)
    per_call_us = 1e6 * s_loop / loop
    per_cell_us = 1e6 * s_first / loop  # the same L cells in one call
    print(json.dumps({**base, "work": "loop1", "calls": loop, "median_s": s_loop, "us_per_call": per_call_us,
                      "cells_per_s": loop / s_loop}), flush=True)
    print(json.dumps({**base, "work": "summary", "batch_cells_per_s": n / s_batch,
                      "first_L_batch_us_per_cell": per_cell_us, "single_call_us": per_call_us,
                      "overhead_us_per_call": per_call_us - per_cell_us, "loop_over_batch": per_call_us / per_cell_us}),
          flush=True)

if __name__ == "__main__":
    main()
