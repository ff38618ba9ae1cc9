"""PyTorch peer of the shared-core MLP workloads (issue 17), on the data and initial weights that
`cargo run --example mlp_peer` wrote to DIR. Same three workloads, same definitions (see
crates/core/examples/mlp_peer.rs); one JSON line per workload.

usage: python torch_mlp.py DIR THREADS REPEATS
"""
import json
import sys

import numpy as np
from _timing import timed
import torch
from torch import nn

N_INFER = 571_392
N_GRAD = 4_096


def load_mlp(d, tag, act):
    layers = []
    for i in range(3):
        lin = nn.Linear(1, 1)
        w = np.load(f"{d}/{tag}_l{i}_weight.npy").astype(np.float32)
        b = np.load(f"{d}/{tag}_l{i}_bias.npy").astype(np.float32).reshape(-1)
        lin.weight = nn.Parameter(torch.from_numpy(w))
        lin.bias = nn.Parameter(torch.from_numpy(b))
        layers.append(lin)
        if i < 2:
            layers.append(act())
    return nn.Sequential(*layers)


def main():
    d, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.load(f"{d}/x.npy").astype(np.float32))
    y = torch.from_numpy(np.load(f"{d}/y.npy").astype(np.float32))
    n = x.shape[0]
    tag = f"pytorch {torch.__version__}"

    def line(work, unit, value, s):
        print(json.dumps({"impl": tag, "work": work, "threads": threads, "unit": unit, "value": value,
                          "median_ms": 1e3 * s}), flush=True)

    relu = load_mlp(d, "relu", nn.ReLU)
    opt = torch.optim.Adam(relu.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)

    def epoch():
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, 256):
            idx = perm[i:i + 256]
            opt.zero_grad(set_to_none=True)
            loss = ((relu(x[idx]) - y[idx]) ** 2).mean()
            loss.backward()
            opt.step()

    s = timed(repeats, epoch)
    line("train_relu", "samples/s", n / s, s)

    xb = x[torch.arange(N_INFER) % n]

    def infer():
        with torch.no_grad():
            relu(xb)

    s = timed(repeats, infer)
    line("infer_relu", "rows/s", N_INFER / s, s)

    tanh = load_mlp(d, "tanh", nn.Tanh)
    xg, yg = x[:N_GRAD], y[:N_GRAD]

    def grad():
        tanh.zero_grad(set_to_none=True)
        ((tanh(xg) - yg) ** 2).mean().backward()

    s = timed(repeats, grad)
    line("grad_tanh", "ms", 1e3 * s, s)


if __name__ == "__main__":
    main()
