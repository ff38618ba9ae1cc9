"""PyTorch peer of the tracking GNN (Kortus et al.'s line-graph interaction network), timed on
the frame that `cargo run --example gnn_peer` wrote: train-mode forward + backward, BCE loss.

Two architectures, both written here from the papers' description (no reference code copied):
  ours       Linear -> BN -> LeakyReLU -> Linear -> BN -> LeakyReLU -> Linear MLPs, the first layer of
             the message MLP split per node / per pair (the same network and flops as gradlab's);
  reference  the reference implementation's layer order: BN -> Linear -> LeakyReLU -> BN -> Linear
             -> LeakyReLU -> BN -> Linear on the concatenated [x_to, x_from, enc] per message.

usage: python track_gnn.py DIR THREADS REPEATS ARCH
"""
import json
import math
import resource
import sys
import time

import numpy as np
import torch
from torch import nn


def mlp_ours(d_in, h, d_out, first=True):
    layers = [nn.Linear(d_in, h)] if first else []
    layers += [nn.BatchNorm1d(h), nn.LeakyReLU(0.01), nn.Linear(h, h), nn.BatchNorm1d(h), nn.LeakyReLU(0.01),
               nn.Linear(h, d_out)]
    return nn.Sequential(*layers)


def mlp_ref(d_in, h, d_out):
    return nn.Sequential(nn.BatchNorm1d(d_in), nn.Linear(d_in, h), nn.LeakyReLU(0.01), nn.BatchNorm1d(h),
                         nn.Linear(h, h), nn.LeakyReLU(0.01), nn.BatchNorm1d(h), nn.Linear(h, d_out))


def encode(theta, d=128, base=0.001):
    omega = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(base) / d))
    r = torch.sqrt(theta.clamp(min=0))[:, None] * omega[None, :]
    enc = torch.empty((theta.shape[0], d))
    enc[:, 0::2] = torch.sin(r)
    enc[:, 1::2] = torch.cos(r)
    return enc


def scatter_max(src, index, n):
    out = torch.zeros((n, src.shape[1]), dtype=src.dtype)
    return out.scatter_reduce(0, index[:, None].expand_as(src), src, reduce="amax", include_self=False)


class Net(nn.Module):
    def __init__(self, arch, dx=8, de=128, h=16):
        super().__init__()
        self.arch = arch
        if arch == "ours":
            self.a = nn.Linear(dx, h)
            self.b = nn.Linear(dx, h, bias=False)
            self.c = nn.Linear(de, h, bias=False)
            self.r1 = mlp_ours(0, h, h, first=False)
            self.obj = mlp_ours(dx + h, h, h)
            self.head = mlp_ours(h, h, 1)
        else:
            self.r1 = mlp_ref(2 * dx + de, h, h)
            self.obj = mlp_ref(dx + h, h, h)
            self.head = mlp_ref(h, h, 1)

    def forward(self, x, enc, frm, to, attr):
        if self.arch == "ours":
            z = self.a(x)[to] + self.b(x)[frm] + self.c(enc)[attr]
        else:
            z = self.r1[1](self.r1[0](torch.cat([x[to], x[frm], enc[attr]], dim=1)))
        m = self.r1(z) if self.arch == "ours" else self.r1[2:](z)
        agg = scatter_max(m, to, x.shape[0])
        return self.head(self.obj(torch.cat([x, agg], dim=1))).squeeze(1)


def main():
    d, threads, repeats, arch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x = torch.tensor(np.load(f"{d}/x.npy"), dtype=torch.float32)
    x[:, 0:2] *= 10.0
    for k in range(6):
        x[:, 2 + k] /= 100.0 if k % 3 == 2 else 10.0
    pred = torch.tensor(np.load(f"{d}/pred.npy"), dtype=torch.int64)
    succ = torch.tensor(np.load(f"{d}/succ.npy"), dtype=torch.int64)
    theta = torch.tensor(np.load(f"{d}/angle.npy"), dtype=torch.float32)
    y = torch.tensor(np.load(f"{d}/truth.npy"), dtype=torch.float32)
    p = pred.shape[0]
    frm, to = torch.cat([pred, succ]), torch.cat([succ, pred])
    attr = torch.cat([torch.arange(p), torch.arange(p)])
    net = Net(arch)
    net.train()
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        enc = encode(theta)  # built per frame, as the reference's transform does
        loss = nn.functional.binary_cross_entropy_with_logits(net(x, enc, frm, to, attr), y)
        net.zero_grad(set_to_none=True)
        loss.backward()
        times.append(1e3 * (time.perf_counter() - t))
    times = sorted(times[1:])
    print(json.dumps({
        "impl": f"pytorch {torch.__version__} ({arch})", "threads": threads, "nodes": x.shape[0],
        "messages": 2 * p, "median_ms": times[len(times) // 2], "min_ms": times[0],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


if __name__ == "__main__":
    main()
