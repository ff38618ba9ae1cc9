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
