"""PyTorch / PyHessian peer of the landscape workloads (issue 17), on the data, parameters and
directions that `cargo run --example landscape_peer` wrote to DIR (see
crates/landscape/examples/landscape_peer.rs for the definitions). One JSON line per workload.

- surface: 51x51 losses at theta + a*d1 + b*d2, a, b in linspace(-1, 1, 51), parameters
  written in place under no_grad (what GradVis / loss-landscapes do);
- hessian_top3: PyHessian's `hessian(model, MSE, data=(x, y)).eigenvalues(top_n=3, tol=1e-3,
  maxIter=100)` (power iteration with deflation, exact Hessian-vector products by autograd).

usage: python landscape_torch.py DIR THREADS REPEATS [WORK,...]
"""
import json
import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

SIZES = [32, 128, 128, 28]
N = 4096


def build(d):
    layout = json.load(open(f"{d}/layout.json"))
    theta = np.load(f"{d}/theta.npy").astype(np.float32)
    model = nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.Tanh(), nn.Linear(SIZES[1], SIZES[2]), nn.Tanh(),
                          nn.Linear(SIZES[2], SIZES[3]))
    # Our names: l{i}.weight / l{i}.bias; torch's Sequential indices 0, 2, 4.
    params = {f"l{i}.{kind}": getattr(model[2 * i], kind) for i in range(3) for kind in ("weight", "bias")}
    order = []
    for e in layout:
        p = params[e["name"]]
        assert list(p.shape) == e["shape"], (e, p.shape)
        order.append((p, e["offset"], e["len"]))
    return model, order, theta


def flat_to_params(order, flat):
    with torch.no_grad():
        for p, off, n in order:
            p.copy_(flat[off:off + n].view_as(p))


def timed(repeats, f):
    times, out = [], None
    for rep in range(repeats + 1):
        t = time.perf_counter()
        out = f()
        if rep > 0:
            times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main():
    d, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    works = sys.argv[4].split(",") if len(sys.argv) > 4 else ["surface", "hessian_top3"]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.from_numpy(np.load(f"{d}/x.npy").astype(np.float32).reshape(N, SIZES[0]))
    y = torch.from_numpy(np.load(f"{d}/y.npy").astype(np.float32).reshape(N, SIZES[3]))
    model, order, theta = build(d)
    t0 = torch.from_numpy(theta)
    d1 = torch.from_numpy(np.load(f"{d}/d1.npy").astype(np.float32))
    d2 = torch.from_numpy(np.load(f"{d}/d2.npy").astype(np.float32))
    mse = nn.MSELoss()
    tag = f"pytorch {torch.__version__}"

    def line(work, s, **extra):
        print(json.dumps({"impl": tag, "work": work, "threads": threads, "median_ms": 1e3 * s, **extra}), flush=True)

    if "surface" in works:
        axis = np.linspace(-1.0, 1.0, 51)

        def surface():
            out = np.empty((51, 51))
            with torch.no_grad():
                for j, b in enumerate(axis):
                    for i, a in enumerate(axis):
                        flat_to_params(order, t0 + float(a) * d1 + float(b) * d2)
                        out[j, i] = mse(model(x), y).item()
            return out

        s, surf = timed(repeats, surface)
        line("surface", s, points_per_s=2601 / s, loss_center=float(surf[25, 25]), loss_sum=float(surf.sum()))

    if "hessian_top3" in works:
        from pyhessian import hessian

        flat_to_params(order, t0)

        def top3():
            h = hessian(model, mse, data=(x, y), cuda=False)
            vals, _ = h.eigenvalues(maxIter=100, tol=1e-3, top_n=3)
            return vals

        s, vals = timed(repeats, top3)
        with torch.no_grad():
            loss = mse(model(x), y).item()
        line("hessian_top3", s, eigenvalues=[float(v) for v in vals], loss=loss)


if __name__ == "__main__":
    main()
