"""gradlab.aerosol against the library's m7-step file path."""

import json

import numpy as np
import pytest

from gradlab.aerosol import M7, m7_step_file, sample_cells


@pytest.fixture(scope="module")
def cells():
    return sample_cells(64, seed=3)


def test_step_equals_the_m7_step_file_path(tmp_path, cells):
    np.save(tmp_path / "in.npy", cells)
    report = m7_step_file(tmp_path / "in.npy", tmp_path / "out.npy")
    assert report["rows"] == 64 and report["output_columns"] == 58
    from_file = np.load(tmp_path / "out.npy")
    m7 = M7()
    out = m7.step(cells)
    assert out.shape == (64, 58) and out.dtype == np.float64
    np.testing.assert_array_equal(out, from_file)
    names = [c["name"] for c in json.loads((tmp_path / "out.columns.json").read_text())]
    assert m7.columns == names and len(m7.units) == 58 and len(m7.input_columns) == 33
    # the step changes the state
    assert not np.array_equal(out[:, :33], cells)


def test_config_dict_and_file_give_the_same_model(tmp_path, cells):
    (tmp_path / "cfg.json").write_text(json.dumps({"dt": 360.0}))
    np.save(tmp_path / "in.npy", cells)
    m7_step_file(tmp_path / "in.npy", tmp_path / "out.npy", config=tmp_path / "cfg.json")
    a = M7({"dt": 360.0}).step(cells)
    b = M7(tmp_path / "cfg.json").step(cells)
    np.testing.assert_array_equal(a, np.load(tmp_path / "out.npy"))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, M7().step(cells))
    assert M7({"dt": 360.0}).config["dt"] == 360.0


def test_layouts_and_float32(cells):
    m7 = M7()
    ref = m7.step(cells)
    np.testing.assert_array_equal(m7.step(np.asfortranarray(cells)), ref)
    big = np.zeros((2 * len(cells), 66))
    big[::2, 1::2] = cells
    np.testing.assert_array_equal(m7.step(big[::2, 1::2]), ref)  # strided view, no copy
    c32 = cells.astype(np.float32)
    np.testing.assert_array_equal(m7.step(c32), m7.step(c32.astype(np.float64)))
    # 34 columns: a trailing boundary-layer flag
    flagged = np.concatenate([cells, np.zeros((len(cells), 1))], axis=1)
    assert m7.step(flagged).shape == (64, 58)


def test_bad_input_raises(cells, tmp_path):
    m7 = M7()
    with pytest.raises(ValueError, match=r"\[N, 33\]"):
        m7.step(cells[:, :32])
    bad = cells.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="row 5.*temperature"):
        m7.step(bad)
    bad = cells.copy()
    bad[2, 2] = 60.0  # RH in percent
    with pytest.raises(ValueError, match="rh"):
        m7.step(bad)
    with pytest.raises(TypeError, match="int64"):
        m7.step(cells.astype(np.int64))
    with pytest.raises(ValueError, match="2-D"):
        m7.step(cells[0])
    with pytest.raises(ValueError, match="dt"):
        M7({"dt": -1.0})
    with pytest.raises(ValueError, match="dtt"):
        M7({"dtt": 720.0})
    with pytest.raises(ValueError, match="nucleation.t_min"):
        M7({"nucleation": {"t_min": 10.0}})
    with pytest.raises(FileNotFoundError):
        M7(tmp_path / "missing.json")
    with pytest.raises(FileNotFoundError):
        m7_step_file(tmp_path / "missing.npy", tmp_path / "out.npy")
    with pytest.raises(ValueError, match="n ="):
        sample_cells(10**9)


def test_sample_cells_deterministic():
    a = sample_cells(8, seed=1)
    np.testing.assert_array_equal(a, sample_cells(8, seed=1))
    np.testing.assert_array_equal(a[4:], sample_cells(4, seed=1, start=4))
    assert not np.array_equal(a, sample_cells(8, seed=2))


# --- the emulator ----------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

from gradlab.aerosol import Emulator  # noqa: E402

EMULATOR = Path(__file__).parent / "data" / "m7-emulator-tiny"


def safetensors(path):
    """The float32 tensors of a safetensors file, read with numpy alone."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32"
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype="<f4").reshape(t["shape"])
    return out


def reference_predict(x):
    """The saved network by hand: z-score, Linear-ReLU-Linear, un-z-score, correction head."""
    saved = json.loads((EMULATOR / "emulator.json").read_text())
    w = safetensors(EMULATOR / "weights.safetensors")
    xn, yn = saved["x_norm"], saved["y_norm"]
    z = (x - np.array(xn["mean"])) / np.array(xn["std"])
    h = np.maximum(z @ w["reg.l0.weight"].T.astype(np.float64) + w["reg.l0.bias"], 0.0)
    o = h @ w["reg.l1.weight"].T.astype(np.float64) + w["reg.l1.bias"]
    phys = o * np.array(yn["std"]) + np.array(yn["mean"])
    state = x[:, 8:32]
    d = np.maximum(state + phys[:, :24], 0.0) - state
    return np.concatenate([d, np.maximum(phys[:, 24:], 0.0)], axis=1)


@pytest.fixture(scope="module")
def x():
    saved = json.loads((EMULATOR / "emulator.json").read_text())
    rng = np.random.default_rng(4)
    mean, std = np.array(saved["x_norm"]["mean"]), np.array(saved["x_norm"]["std"])
    return np.abs(mean + 0.5 * std * rng.normal(size=(200, 32)))


def test_emulator_predicts_as_the_saved_network(x):
    em = Emulator.load(EMULATOR)
    assert em.dt == 720.0 and len(em.input_columns) == 32 and len(em.output_columns) == 28
    assert em.config["head"] == "correction" and em.parameters == 32 * 16 + 16 + 16 * 28 + 28
    p = em.predict(x)
    assert p.shape == (200, 28) and p.dtype == np.float32
    ref = reference_predict(x.astype(np.float32).astype(np.float64))
    # tolerance: float32 arithmetic; for the states `relu(x + Δ) − x` in float32 also loses
    # up to a few ulps of the state x itself (cancellation when x ≫ Δ)
    tol = 1e-4 * np.abs(ref).max(axis=0) + 1e-30
    tol = tol + np.concatenate([4 * 2.0**-23 * np.abs(x[:, 8:]), np.zeros((len(x), 4))], axis=1)
    assert np.all(np.abs(p - ref) <= tol)
    # float32 input and Fortran order give the same result
    np.testing.assert_array_equal(em.predict(x.astype(np.float32)), p)
    np.testing.assert_array_equal(em.predict(np.asfortranarray(x)), p)
    # a step: the state after it (never negative with this head), then the water
    y = em.step(x)
    assert y.dtype == np.float64 and np.all(y[:, :24] >= 0.0)
    np.testing.assert_allclose(y[:, :24], np.maximum(x[:, 8:] + p[:, :24], 0.0), rtol=1e-6, atol=1e-30)


def test_emulator_errors(tmp_path, x):
    with pytest.raises(FileNotFoundError, match="emulator.json"):
        Emulator.load(tmp_path)
    em = Emulator.load(EMULATOR)
    with pytest.raises(ValueError, match=r"\[N, 32\]"):
        em.predict(x[:, :30])
    with pytest.raises(TypeError, match="float32 or float64"):
        em.predict(x.astype(np.int64))
