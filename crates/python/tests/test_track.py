"""gradlab.track against the library's dataset writer (frames read back with numpy alone)."""

import numpy as np
import pytest

from gradlab.track import Simulator, generate_dataset, load_split


@pytest.fixture(scope="module")
def sim():
    return Simulator.bergen(thickness_mm=150.0, primaries=10)


def test_frame_equals_the_rust_dataset_writer(tmp_path, sim):
    manifest = generate_dataset(tmp_path, sim.config, 7, [("train", 2), ("test", 2)])
    split = dict(manifest["splits"])["test"]
    f32 = np.load(tmp_path / "test_hits_f32.npy")
    u32 = np.load(tmp_path / "test_hits_u32.npy")
    ptr = np.load(tmp_path / "test_frame_ptr.npy")
    info = np.load(tmp_path / "test_frame_info.npy")
    for k in range(2):
        f = sim.frame(7, split["first_frame"] + k)
        a, b = ptr[k], ptr[k + 1]
        assert len(f["hits"]) == b - a > 0
        np.testing.assert_array_equal(f["hits"], f32[a:b, :3])
        np.testing.assert_array_equal(f["edep"], f32[a:b, 3])
        np.testing.assert_array_equal(f["layer"], u32[a:b, 0])
        np.testing.assert_array_equal(f["cluster"], u32[a:b, 1])
        np.testing.assert_array_equal(f["track"], u32[a:b, 2])
        np.testing.assert_array_equal(f["primary"], u32[a:b, 3] == 1)
        np.testing.assert_array_equal(f["spot"], info[k, :2])
        assert f["primaries"] == info[k, 2] == 10
    loaded = load_split(tmp_path, "test")
    for k, g in enumerate(loaded):
        f = sim.frame(7, split["first_frame"] + k)
        for key in ("hits", "layer", "edep", "cluster", "track", "primary", "spot"):
            np.testing.assert_array_equal(f[key], g[key])


def test_frame_arrays(sim):
    f = sim.frame(1, 0)
    assert f["hits"].dtype == np.float32 and f["hits"].shape[1] == 3
    assert f["layer"].dtype == np.uint16 and f["track"].dtype == np.uint32
    assert f["primary"].dtype == np.bool_
    assert np.all(np.diff(f["layer"].astype(int)) >= 0)
    assert set(np.unique(f["track"])) <= set(range(10))
    assert f["layer"].max() < sim.num_layers
    g = sim.frame(1, 0)
    np.testing.assert_array_equal(f["hits"], g["hits"])
    assert not np.array_equal(sim.frame(2, 0)["edep"], f["edep"])


def test_config_dict_round_trip_and_errors(tmp_path, sim):
    cfg = sim.config
    again = Simulator(cfg)
    np.testing.assert_array_equal(again.frame(3, 1)["hits"], sim.frame(3, 1)["hits"])
    bad = dict(cfg)
    bad["phantom"] = dict(cfg["phantom"], thickness_mm=-5.0)
    with pytest.raises(ValueError, match="phantom.thickness_mm"):
        Simulator(bad)
    bad = dict(cfg, primaries_per_frame="ten")
    with pytest.raises(ValueError, match="primaries_per_frame"):
        Simulator(bad)
    bad = dict(cfg, unknown_field=1)
    with pytest.raises(ValueError, match="unknown_field"):
        Simulator(bad)
    with pytest.raises(FileNotFoundError):
        Simulator(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path / "nothing", "test")
    with pytest.raises(OverflowError):
        sim.frame(-1, 0)


# --- graphs, tracks and scoring ------------------------------------------------------------

from pathlib import Path  # noqa: E402

from gradlab.track import HitGraph, Tracker, purity_efficiency, reconstruct, tracks_from_edges  # noqa: E402

MODEL = Path(__file__).parent / "data" / "ptt-line-100p"


def polar(a, b):
    d = a - b
    return np.arccos(np.clip(d[..., 2] / np.linalg.norm(d, axis=-1), -1.0, 1.0))


def test_hit_graph_equals_a_brute_force_construction(sim):
    f = sim.frame(3, 0)
    g = HitGraph(f)
    hits = f["hits"].astype(np.float64)
    # nodes point back at the frame's hits
    np.testing.assert_array_equal(g.pos, f["hits"][g.hit])
    np.testing.assert_array_equal(g.layer, f["layer"][g.hit])
    assert sorted(g.hit.tolist()) == list(range(len(hits)))
    # every pair of hits in consecutive layers within the polar-angle cut (0.2 rad for sources
    # in layers 1, 2; 0.4 rad deeper), by brute force in numpy, in frame hit indices
    want = set()
    layer = f["layer"].astype(int)
    for s in range(len(hits)):
        if layer[s] == 0:
            continue
        for t in np.flatnonzero(layer == layer[s] - 1):
            cut = 0.2 if layer[s] < 3 else 0.4
            if polar(hits[s], hits[t]) < cut:
                want.add((s, int(t)))
    ei = g.edge_index
    got = {(int(g.hit[a]), int(g.hit[b])) for a, b in zip(ei[0], ei[1])}
    assert got == want and g.num_edges == len(want)
    # truth: same primary at both ends
    tr = f["track"]
    np.testing.assert_array_equal(g.edge_truth, tr[g.hit[ei[0]]] == tr[g.hit[ei[1]]])
    assert g.edge_features.shape == (g.num_edges, 3) and g.node_features.shape == (g.num_nodes, 4)
    # looser cuts give a superset
    g2 = HitGraph(f, {"calorimeter_max_theta_rad": 0.6})
    assert g2.num_edges > g.num_edges
    with pytest.raises(ValueError, match="calorimeter_max_theta_rad"):
        HitGraph(f, {"calorimeter_max_theta_rad": 2.0})


def test_line_graph_joins_consecutive_segments(sim):
    g = HitGraph(sim.frame(3, 1))
    lg = g.line_graph()
    ei = g.edge_index
    src, dst = ei[0], ei[1]
    # pred's target hit is succ's source hit; every such pair is there once
    assert np.all(dst[lg["pred"]] == src[lg["succ"]])
    out_deg = np.bincount(src, minlength=g.num_nodes)
    assert len(lg["pred"]) == int(out_deg[dst].sum())
    assert lg["node_features"].shape == (g.num_edges, 8)
    assert lg["edge_index"].shape == (2, 2 * len(lg["pred"]))
    # the angle between the two segments
    pos = g.pos.astype(np.float64)
    u = pos[src[lg["pred"]]] - pos[dst[lg["pred"]]]
    v = pos[src[lg["succ"]]] - pos[dst[lg["succ"]]]
    cos = np.sum(u * v, axis=1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(lg["angle"], np.arccos(np.clip(cos, -1, 1)), atol=2e-3)


def test_purity_and_efficiency_by_hand(sim):
    f = sim.frame(3, 2)
    g = HitGraph(f)
    truth_tracks = tracks_from_edges(g, g.edge_truth)
    for t in truth_tracks:
        assert len(set(f["track"][t].tolist())) == 1
        assert np.all(np.diff(f["layer"][t]) > 0)  # shallow → deep
    m = purity_efficiency(f, truth_tracks)
    considered = [t for t in truth_tracks if f["primary"][t].all()]
    assert m["considered"] == len(considered) and m["correct"] == len(considered)
    assert m["purity"] == 1.0
    # the same counted on the graph object
    assert purity_efficiency(g, truth_tracks) == m
    # splice two primaries' tracks: that track is no longer correct
    a, b = [t for t in considered if len(t) > 6][:2]
    bad = np.concatenate([a[:3], b[3:]])
    bad = bad[np.argsort(f["layer"][bad])]
    if len(np.unique(f["layer"][bad])) == len(bad):
        m2 = purity_efficiency(f, [bad] + [t for t in considered if t is not a and t is not b], filter=False)
        assert m2["correct"] == m2["considered"] - 1
    with pytest.raises(ValueError, match="hit"):
        purity_efficiency(f, [[0, 10**6]])
    with pytest.raises(ValueError, match="empty"):
        purity_efficiency(f, [[]])


def test_bad_frames_are_refused(sim):
    f = sim.frame(3, 0)
    broken = dict(f)
    del broken["edep"]
    with pytest.raises(KeyError, match="edep"):
        HitGraph(broken)
    broken = dict(f, hits=f["hits"][:, :2])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        HitGraph(broken)
    broken = dict(f, layer=-np.ones(len(f["layer"]), dtype=np.int64))
    with pytest.raises(ValueError, match="layer"):
        HitGraph(broken)
    broken = dict(f, hits=np.full_like(f["hits"], np.nan))
    with pytest.raises(ValueError, match="finite"):
        HitGraph(broken)


def test_tracker_reconstructs_with_the_trained_weights():
    frames_sim = Simulator.bergen(thickness_mm=150.0, primaries=100)
    tracker = Tracker.load(MODEL)
    assert tracker.card["spec"]["method"] == "ptt"
    purities = []
    for i in range(3):
        f = frames_sim.frame(11, i)
        r = tracker.reconstruct(f)
        g = r["graph"]
        assert len(r["probabilities"]) == len(r["selected"]) == g.num_edges
        # the tracks are those of the selected edges, filtered
        want = tracks_from_edges(g, r["selected"])
        assert [t.tolist() for t in r["tracks"]] == [t.tolist() for t in want]
        # per layer pair, each hit keeps at most one edge either way (an assignment)
        ei = g.edge_index[:, r["selected"]]
        assert len(np.unique(ei[0])) == ei.shape[1] and len(np.unique(ei[1])) == ei.shape[1]
        purities.append(purity_efficiency(f, r["tracks"])["purity"])
    # the run measured 92.7 % at this setting; untrained weights give ≈ 0
    assert np.mean(purities) > 0.8, purities
    r2 = reconstruct(frames_sim.frame(11, 0), MODEL)
    assert [t.tolist() for t in r2["tracks"]] == [
        t.tolist() for t in tracker.reconstruct(frames_sim.frame(11, 0))["tracks"]
    ]


def test_tracker_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        Tracker.load(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="model.json"):
        Tracker.load(tmp_path)
