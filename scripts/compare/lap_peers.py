"""Side by side (issue 18): gradlab.lap.linear_sum_assignment against
scipy.optimize.linear_sum_assignment and lap.lapjv, in one Python process, on identical seeded
rectangular matrices with forbidden entries, end to end from a dense numpy array (each call
includes whatever conversion the solver does). Checks that the three agree on the optimum,
then prints the median time of each and the ratios peer / ours.

usage: lap_peers.py [SIZES=500x550,2000x2200] [FORBIDDEN=0.2] [REPEATS=7] [SEED=0]
"""
import json
import sys
import time

import numpy as np
import scipy
import scipy.optimize
import lap

import gradlab
from gradlab.lap import linear_sum_assignment as ours

BIG = 1e9  # lapjv has no forbidden entries: a cost no optimal full matching uses


def problem(rows, cols, forbidden, seed):
    rng = np.random.default_rng(seed)
    c = rng.random((rows, cols))
    c[rng.random((rows, cols)) < forbidden] = np.inf
    return c


def lapjv_solve(c):
    # lap.lapjv wants finite costs; extend_cost=True handles rectangular matrices.
    finite = np.where(np.isfinite(c), c, BIG)
    _, x, _ = lap.lapjv(finite, extend_cost=True)
    rows = np.nonzero(x >= 0)[0]
    return rows, x[rows]


def timed(f, c, repeats):
    out = f(c)  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(c)
        ts.append(time.perf_counter() - t0)
    return out, float(np.median(ts))


def main():
    sizes = sys.argv[1] if len(sys.argv) > 1 else "500x550,2000x2200"
    forbidden = float(sys.argv[2]) if len(sys.argv) > 2 else 0.2
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    print(f"# numpy {np.__version__}, scipy {scipy.__version__}, lap {lap.__version__}, gradlab {gradlab.__version__}")
    rows_out = []
    for spec in sizes.split(","):
        r, k = (int(v) for v in spec.split("x"))
        c = problem(r, k, forbidden, seed)
        res = {}
        for name, f in (
            ("gradlab", ours),
            ("scipy", scipy.optimize.linear_sum_assignment),
            ("lapjv", lapjv_solve),
        ):
            (ri, ci), t = timed(f, c, repeats)
            res[name] = (float(c[ri, ci].sum()), len(ri), t)
        best = res["scipy"][0]
        for name, (cost, n, _) in res.items():
            assert n == min(r, k), (name, n)
            assert abs(cost - best) <= 1e-9 * max(1.0, abs(best)), (name, cost, best)
        line = {
            "size": spec,
            "forbidden": forbidden,
            "seconds": {n: v[2] for n, v in res.items()},
            "scipy_over_gradlab": res["scipy"][2] / res["gradlab"][2],
            "lapjv_over_gradlab": res["lapjv"][2] / res["gradlab"][2],
            "optimum": best,
        }
        print(json.dumps(line))
        rows_out.append(line)
    print()
    print("| size | forbidden | gradlab (ms) | scipy (ms) | lap.lapjv (ms) | scipy / gradlab | lapjv / gradlab |")
    print("|---|---|---|---|---|---|---|")
    for l in rows_out:
        s = l["seconds"]
        print(
            f"| {l['size']} | {l['forbidden']:.0%} | {1e3 * s['gradlab']:.1f} | {1e3 * s['scipy']:.1f} | "
            f"{1e3 * s['lapjv']:.1f} | {l['scipy_over_gradlab']:.2f} | {l['lapjv_over_gradlab']:.2f} |"
        )


if __name__ == "__main__":
    main()
