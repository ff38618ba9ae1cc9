"""Peers of issue 22: scikit-optimize gp_minimize and BoTorch (SingleTaskGP + LogEI) on the
test functions of gradlab-bayesopt, same budget and seeds. One JSON line per (impl, function,
seed): best value found, overhead per iteration (wall time between two objective calls, i.e.
everything except the objective), mean over the run and over the last 10 iterations.

Issue 18 adds gradlab from Python (`gradlab.bayesopt.minimize`, its defaults: Latin-hypercube
start of max(5, 2·dim + 1) points, lag 3 — the default Study of the Rust `bo_peer`), timed by the
same wrapper, and `run-all`, which runs gradlab, skopt and botorch in ONE Python process,
interleaved per (function, seed) so that a busy machine slows all three alike.

usage: bo_peers.py run IMPL FUNCTIONS SEEDS BUDGET THREADS   (IMPL: gradlab | skopt | botorch)
       bo_peers.py run-all FUNCTIONS SEEDS BUDGET THREADS [IMPLS=gradlab,skopt,botorch]
       bo_peers.py table RESULTS.jsonl                          (table, ratios, paired tests)
Threads: THREADS sets torch.set_num_threads and RAYON_NUM_THREADS (if not set already, before
gradlab is imported); set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS in the
environment for numpy (py_bo_peers.sh does).
"""
import json
import math
import os
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


# The same definitions as crates/bayesopt/src/testfns.rs.
def levy(x):
    w = 1.0 + (np.asarray(x) - 1.0) / 4.0
    f = math.sin(math.pi * w[0]) ** 2
    for wi in w[:-1]:
        f += (wi - 1.0) ** 2 * (1.0 + 10.0 * math.sin(math.pi * wi + 1.0) ** 2)
    return f + (w[-1] - 1.0) ** 2 * (1.0 + math.sin(2.0 * math.pi * w[-1]) ** 2)


def branin(x):
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x[1] - b * x[0] ** 2 + c * x[0] - 6) ** 2 + 10 * (1 - t) * math.cos(x[0]) + 10


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
     [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]


def hartmann6(x):
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - 1e-4 * P[i][j]) ** 2 for j in range(6))) for i in range(4))


def ackley(x):
    x = np.asarray(x)
    d = len(x)
    return float(-20 * math.exp(-0.2 * math.sqrt((x**2).sum() / d)) - math.exp(np.cos(2 * math.pi * x).sum() / d) + 20 + math.e)


FUNCTIONS = {
    "branin": (branin, [(-5.0, 10.0), (0.0, 15.0)], 0.397887357729738),
    "hartmann6": (hartmann6, [(0.0, 1.0)] * 6, -3.32236801141551),
    "levy5": (levy, [(-10.0, 10.0)] * 5, 0.0),
    "ackley5": (ackley, [(-32.768, 32.768)] * 5, 0.0),
}


class Timed:
    """Wraps an objective; overhead of an iteration = time since the previous call returned."""

    def __init__(self, f):
        self.f, self.best, self.gaps, self.last = f, math.inf, [], None

    def __call__(self, x):
        now = time.perf_counter()
        self.gaps.append(now - (self.last if self.last is not None else self.t0))
        y = float(self.f([float(v) for v in x]))
        self.best = min(self.best, y)
        self.last = time.perf_counter()
        return y


def run_skopt(f, bounds, seed, budget):
    from skopt import gp_minimize
    obj = Timed(f)
    obj.t0 = time.perf_counter()
    gp_minimize(obj, bounds, n_calls=budget, n_initial_points=10, random_state=seed)
    return obj


def run_gradlab(f, bounds, seed, budget):
    from gradlab.bayesopt import minimize
    obj = Timed(f)
    obj.t0 = time.perf_counter()
    minimize(obj, bounds, n_calls=budget, random_state=seed)
    return obj


def run_botorch(f, bounds, seed, budget):
    import torch
    from botorch.acquisition import LogExpectedImprovement
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from botorch.optim import optimize_acqf
    from botorch.utils.sampling import draw_sobol_samples
    from gpytorch.mlls import ExactMarginalLogLikelihood

    torch.manual_seed(seed)
    lo = torch.tensor([b[0] for b in bounds], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in bounds], dtype=torch.float64)
    d = len(bounds)
    unit = torch.stack([torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)])
    obj = Timed(f)
    obj.t0 = time.perf_counter()
    X = draw_sobol_samples(unit, n=10, q=1, seed=seed).squeeze(1)
    Y = torch.tensor([[-obj((lo + (hi - lo) * x).tolist())] for x in X], dtype=torch.float64)
    while len(Y) < budget:
        gp = SingleTaskGP(X, Y, outcome_transform=Standardize(m=1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(gp.likelihood, gp))
        acq = LogExpectedImprovement(gp, best_f=Y.max())
        cand, _ = optimize_acqf(acq, bounds=unit, q=1, num_restarts=10, raw_samples=512)
        x = cand.detach()
        y = -obj((lo + (hi - lo) * x[0]).tolist())
        X = torch.cat([X, x])
        Y = torch.cat([Y, torch.tensor([[y]], dtype=torch.float64)])
    return obj


def seeds_of(s):
    out = []
    for part in s.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


RUNNERS = {"gradlab": run_gradlab, "skopt": run_skopt, "botorch": run_botorch}
LABELS = {"gradlab": "gradlab-py"}  # the Rust bo_peer's lines say "gradlab"


def set_threads(threads):
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # read when gradlab's pool starts
    import torch
    torch.set_num_threads(threads)


def run_one(impl, name, seed, budget, threads):
    f, bounds, _ = FUNCTIONS[name]
    obj = RUNNERS[impl](f, bounds, seed, budget)
    gaps = [g * 1e3 for g in obj.gaps]
    print(json.dumps({"impl": LABELS.get(impl, impl), "function": name, "seed": seed, "budget": budget, "best": obj.best,
                      "overhead_ms_mean": sum(gaps) / len(gaps),
                      "overhead_ms_last10": sum(gaps[-10:]) / len(gaps[-10:]), "threads": str(threads)}),
          flush=True)


def run(impl, functions, seeds, budget, threads):
    set_threads(threads)
    for name in functions.split(","):
        for seed in seeds_of(seeds):
            run_one(impl, name, seed, budget, threads)


def run_all(functions, seeds, budget, threads, impls="gradlab,skopt,botorch"):
    """Every impl in this one process, interleaved per (function, seed); ours first in the
    output so that `table` takes it as the reference."""
    set_threads(threads)
    impls = impls.split(",")
    for name in functions.split(","):
        for seed in seeds_of(seeds):
            for impl in impls:
                run_one(impl, name, seed, budget, threads)


def table(path):
    from scipy import stats
    rows = [json.loads(line) for line in open(path) if line.strip()]
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    ours = impls[0]
    functions = list(dict.fromkeys(r["function"] for r in rows))
    threads = sorted({r["threads"] for r in rows})
    by = {(r["impl"], r["function"], r["threads"], r["seed"]): r for r in rows}

    def cell(vals, digits):
        return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0.0:.{digits}f}"

    for th in threads:
        print(f"\n## threads = {th} (RAYON_NUM_THREADS / torch.set_num_threads / OMP_NUM_THREADS)\n")
        print("| function (f*) | " + " | ".join(impls) + " | best peer | paired t (ours − best peer), one-sided p(ours worse) |")
        print("|---" * (len(impls) + 3) + "|")
        for fn in functions:
            seeds = sorted({r["seed"] for r in rows if r["function"] == fn and r["threads"] == th})
            best = {i: [by[(i, fn, th, s)]["best"] for s in seeds if (i, fn, th, s) in by] for i in impls}
            peers = [i for i in impls[1:] if len(best[i]) == len(seeds)]
            line = [f"{fn} ({FUNCTIONS[fn][2]:g})"] + [cell(best[i], 4) for i in impls]
            if peers and len(best[ours]) == len(seeds) and len(seeds) > 1:
                bp = min(peers, key=lambda i: np.mean(best[i]))
                diff = np.array(best[ours]) - np.array(best[bp])
                t = stats.ttest_rel(best[ours], best[bp], alternative="greater") if np.any(diff != 0) else None
                p = f"{t.pvalue:.3f}" if t is not None else "n/a"
                line += [bp, f"{diff.mean():+.4f} (p = {p}, ours better on {int((diff < 0).sum())}/{len(diff)} seeds)"]
            else:
                line += ["–", "–"]
            print("| " + " | ".join(line) + " |")
        print("\nOverhead per iteration (ms; mean over the run / mean of the last 10), and peer / ours:\n")
        print("| function | " + " | ".join(impls) + " | " + " | ".join(f"{p} / {ours}" for p in impls[1:]) + " |")
        print("|---" * (2 * len(impls)) + "|")
        for fn in functions:
            ov = {}
            for i in impls:
                rs = [r for r in rows if r["impl"] == i and r["function"] == fn and r["threads"] == th]
                ov[i] = (np.mean([r["overhead_ms_mean"] for r in rs]) if rs else math.nan,
                         np.mean([r["overhead_ms_last10"] for r in rs]) if rs else math.nan)
            line = [fn] + [f"{ov[i][0]:.2f} / {ov[i][1]:.2f}" for i in impls]
            line += [f"{ov[p][0] / ov[ours][0]:.0f}× / {ov[p][1] / ov[ours][1]:.0f}×" for p in impls[1:]]
            print("| " + " | ".join(line) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif sys.argv[1] == "run-all":
        run_all(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), *sys.argv[6:7])
    elif sys.argv[1] == "table":
        table(sys.argv[2])
    else:
        sys.exit(__doc__)
