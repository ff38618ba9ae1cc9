"""Side by side from Python (issue 18): the top-3 Hessian eigenvalues of a PyTorch MLP through
`gradlab.landscape.hessian_eigs` (Lanczos, in Rust) on the exact Hessian-vector products of
`gradlab.landscape.torch.Objective`, against PyHessian's `hessian(model, MSE, data=(x, y))
.eigenvalues(top_n=3)` (power iteration with deflation), in ONE Python process, on the same
model, batch and thread count; eigenvalues checked against an independent reference.

Models (tanh MLPs, MSE on one fixed batch of standard-normal inputs and targets, PyTorch's
default initialisation from seed 7 — the network of landscape_torch.py / landscape_peer.rs,
generated here in torch instead of read from .npy):
- `small`: 32→24→24→28 (2,092 parameters), 1,024 samples; reference: numpy.linalg.eigvalsh of
  the dense Hessian (rows by batched double backward through plain torch.autograd, float64).
- `peer`:  32→128→128→28 (24,348 parameters), 4,096 samples (landscape_torch.py's); the dense
  Hessian is out of reach (4.7 GB), reference: scipy's ARPACK `eigsh(which="LA", tol=1e-12)`
  on float64 Hessian-vector products by plain torch.autograd.

Implementations (each timed from the model and batch to the eigenvalues, i.e. including the
gradient graph PyHessian builds in its constructor and our Objective's copy of the model):
- `pyhessian`: the float32 model (PyHessian draws float32 probe vectors), `maxIter=100, tol=1e-3`;
- `gradlab f32 tol1e-3`: `Objective(model, mse, [(x, y)], dtype=torch.float32)` and
  `hessian_eigs(theta, k=3, hvp=obj.hvp, tol=1e-3)` (residual ≤ 1e-3 · ‖T‖; the Rust peer's setting);
- `gradlab f64 tol1e-3` and `gradlab f64 tol1e-10` (with max_steps=200: the binding's default
  cap was 4k + 20 = 32 steps before commit 1192b00, which ends before a 1e-10 residual on `peer`):
  the default float64 objective.
Median of REPEATS runs after one warm-up, implementations interleaved per repeat. One JSON line
per (model, impl): median_ms, eigenvalues, max relative error against the reference, number of
Hessian-vector products; then a table with the ratio PyHessian time / ours (> 1: ours faster).

usage: py_hessian.py THREADS REPEATS [MODELS=small,peer]
"""

import copy
import json
import os
import statistics
import sys
import time

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
os.environ.setdefault("RAYON_NUM_THREADS", str(THREADS))  # before gradlab's thread pool starts

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import gradlab  # noqa: E402
import gradlab.landscape as gl  # noqa: E402
from gradlab.landscape.torch import Objective  # noqa: E402

MODELS = {"small": ([32, 24, 24, 28], 1024), "peer": ([32, 128, 128, 28], 4096)}  # sizes, batch


def build(sizes, n):
    torch.manual_seed(7)
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.Tanh()]
    model = nn.Sequential(*layers[:-1])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, sizes[0], generator=g)
    y = torch.randn(n, sizes[-1], generator=g)
    return model, x, y


def reference(model, x, y, dense):
    """Top-3 eigenvalues of the float64 Hessian, by plain torch.autograd (not gradlab's code)."""
    m = copy.deepcopy(model).double()
    params = list(m.parameters())
    n = sum(p.numel() for p in params)
    loss = nn.MSELoss()(m(x.double()), y.double())
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params, create_graph=True)])
    if dense:
        h = np.empty((n, n))
        chunk = 64
        for i in range(0, n, chunk):
            e = torch.zeros(min(chunk, n - i), n, dtype=torch.float64)
            e[torch.arange(e.shape[0]), torch.arange(i, i + e.shape[0])] = 1.0
            rows = torch.autograd.grad(g, params, grad_outputs=e, retain_graph=True, is_grads_batched=True)
            h[i : i + e.shape[0]] = torch.cat([r.reshape(e.shape[0], -1) for r in rows], dim=1).numpy()
        return np.linalg.eigvalsh(0.5 * (h + h.T))[::-1][:3], n, "dense eigvalsh"
    from scipy.sparse.linalg import LinearOperator, eigsh

    def mv(v):
        v = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64).reshape(-1))
        hv = torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)
        return torch.cat([t.reshape(-1) for t in hv]).numpy()

    vals = eigsh(LinearOperator((n, n), matvec=mv, dtype=np.float64), k=3, which="LA", tol=1e-12,
                 return_eigenvectors=False)
    return np.sort(vals)[::-1], n, "ARPACK eigsh f64"


def run_pyhessian(model, x, y, counter):
    import pyhessian  # noqa: F401  (its __init__ shadows the module pyhessian.hessian with the class)

    ph_mod = sys.modules["pyhessian.hessian"]

    if not hasattr(ph_mod, "_gradlab_count"):  # count the products PyHessian takes
        orig = ph_mod.hessian_vector_product

        def counted(*a, **k):
            ph_mod._gradlab_count[0] += 1
            return orig(*a, **k)

        ph_mod.hessian_vector_product = counted
    ph_mod._gradlab_count = counter
    model.zero_grad(set_to_none=True)
    h = ph_mod.hessian(model, nn.MSELoss(), data=(x, y), cuda=False)
    vals, _ = h.eigenvalues(maxIter=100, tol=1e-3, top_n=3)
    model.zero_grad(set_to_none=True)
    return np.array(vals, dtype=np.float64)


def run_ours(model, x, y, counter, dtype, tol, max_steps=None):
    obj = Objective(model, nn.MSELoss(), [(x, y)], dtype=dtype)

    def hvp(v):
        counter[0] += 1
        return obj.hvp(v)

    vals, _ = gl.hessian_eigs(obj.theta, k=3, hvp=hvp, tol=tol, max_steps=max_steps)
    return vals


IMPLS = {
    "pyhessian": run_pyhessian,
    "gradlab f32 tol1e-3": lambda m, x, y, c: run_ours(m, x, y, c, torch.float32, 1e-3),
    "gradlab f64 tol1e-3": lambda m, x, y, c: run_ours(m, x, y, c, torch.float64, 1e-3),
    # explicit cap: the binding's old default (4k + 20 = 32) stopped before a 1e-10 residual on `peer`
    "gradlab f64 tol1e-10": lambda m, x, y, c: run_ours(m, x, y, c, torch.float64, 1e-10, max_steps=200),
}


def main():
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    models = sys.argv[3].split(",") if len(sys.argv) > 3 else list(MODELS)
    torch.set_num_threads(THREADS)
    versions = {"torch": torch.__version__, "gradlab": getattr(gradlab, "__version__", "?")}
    rows = []
    for name in models:
        model, x, y = build(*MODELS[name])
        t = time.perf_counter()
        ref, n, how = reference(model, x, y, dense=name == "small")
        ref_s = time.perf_counter() - t
        times = {k: [] for k in IMPLS}
        out = {}
        for rep in range(repeats + 1):
            for impl, f in IMPLS.items():
                counter = [0]
                t = time.perf_counter()
                vals = f(model, x, y, counter)
                s = time.perf_counter() - t
                if rep > 0:
                    times[impl].append(s)
                out[impl] = (vals, counter[0])
        for impl in IMPLS:
            vals, products = out[impl]
            row = {"model": name, "params": n, "impl": impl, "threads": THREADS,
                   "median_ms": 1e3 * statistics.median(times[impl]),
                   "eigenvalues": [float(v) for v in vals], "reference": [float(v) for v in ref],
                   "reference_method": how, "reference_s": ref_s,
                   "max_rel_err": float(np.max(np.abs(np.asarray(vals) - ref) / np.abs(ref))),
                   "products": products, **versions}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| model (params) | threads | impl | median | products | top-3 eigenvalues | max rel. error | "
          "PyHessian / this |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        peer = next(p for p in rows if p["model"] == r["model"] and p["impl"] == "pyhessian")
        print(f"| {r['model']} ({r['params']:,}) | {r['threads']} | {r['impl']} | {r['median_ms']:.0f} ms | "
              f"{r['products']} | {', '.join(f'{v:.6g}' for v in r['eigenvalues'])} | {r['max_rel_err']:.1e} | "
              f"{peer['median_ms'] / r['median_ms']:.2f} |")
    for name in models:
        r = next(p for p in rows if p["model"] == name)
        print(f"reference ({name}, {r['reference_method']}): {', '.join(f'{v:.7g}' for v in r['reference'])}")


if __name__ == "__main__":
    main()
