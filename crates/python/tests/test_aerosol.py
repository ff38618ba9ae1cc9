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
