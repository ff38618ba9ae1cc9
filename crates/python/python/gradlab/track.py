"""Proton CT tracking: the Bergen digital tracking calorimeter simulator.

Example::

    >>> from gradlab.track import Simulator
    >>> sim = Simulator.bergen(thickness_mm=150.0, primaries=20)
    >>> f = sim.frame(seed=1, index=0)
    >>> f["hits"].shape[1], f["hits"].dtype.name, int(f["primaries"])
    (3, 'float32', 20)

Graphs and scoring. Tracks are arrays of frame hit indices (shallow to deep)::

    >>> import numpy as np
    >>> from gradlab.track import HitGraph, purity_efficiency, tracks_from_edges
    >>> g = HitGraph(f)
    >>> g.edge_index.shape[0], g.num_edges == len(g.edge_truth)
    (2, True)
    >>> tracks = tracks_from_edges(g, g.edge_truth)    # the true edges, as if perfectly scored
    >>> m = purity_efficiency(f, tracks)
    >>> sorted(m)
    ['considered', 'correct', 'efficiency', 'purity', 'reconstructed', 'true_tracks']

A trained GNN (a checkpoint folder of ``track-pat`` / ``track-ptt`` / ``track-compare``)::

    tracker = Tracker.load("runs/track-compare/<run>/checkpoints/PTT-seed1")
    r = tracker.reconstruct(f)      # r["tracks"], r["probabilities"], r["selected"], r["graph"]
    purity_efficiency(r["graph"], r["tracks"])
"""

from __future__ import annotations

from ._gradlab import (
    HitGraph,
    Simulator,
    Tracker,
    generate_dataset,
    load_split,
    purity_efficiency,
    reconstruct,
    tracks_from_edges,
)

__all__ = [
    "Simulator",
    "generate_dataset",
    "load_split",
    "HitGraph",
    "tracks_from_edges",
    "purity_efficiency",
    "Tracker",
    "reconstruct",
]
