"""No memory growth over 10k calls of each binding that allocates per call (numpy arrays out,
Python callables called from Rust, dicts built in Rust). A leak of one call's allocations
would grow the peak RSS by far more than the bounds below."""

import resource
from pathlib import Path

import numpy as np

from gradlab import aerosol, landscape, track


def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def growth(call, n=10_000, warm=500):
    for _ in range(warm):
        call()
    before = peak_kib()
    for _ in range(n):
        call()
    return peak_kib() - before


def test_m7_and_emulator_calls_do_not_leak():
    cells = aerosol.sample_cells(20, seed=5)
    m7 = aerosol.M7()
    # one call makes a [20, 58] float64 array (9 KiB): a leak would be ≥ 90 MB
    assert growth(lambda: m7.step(cells)) < 20_000
    em = aerosol.Emulator.load(Path(__file__).parent / "data" / "m7-emulator-tiny")
    x = np.abs(np.random.default_rng(0).normal(1.0, 0.5, (50, 32)))
    assert growth(lambda: em.predict(x)) < 20_000


def test_graph_and_scoring_calls_do_not_leak():
    f = track.Simulator.bergen(thickness_mm=150.0, primaries=5).frame(1, 0)
    g = track.HitGraph(f)
    truth = g.edge_truth

    def call():
        h = track.HitGraph(f)
        h.edge_index
        h.line_graph()
        track.purity_efficiency(h, track.tracks_from_edges(h, truth))

    assert growth(call, n=5_000) < 20_000


def test_callables_from_rust_do_not_leak():
    h = np.arange(1.0, 9.0)
    theta = np.zeros(8)
    e = np.eye(8)

    def call():
        landscape.surface(lambda t: float(t @ t), theta, e[0], e[1], x=(-1, 1, 3), y=(-1, 1, 3))
        landscape.trace(theta, hvp=lambda v: h * v, products=6)

    assert growth(call, n=5_000) < 20_000
