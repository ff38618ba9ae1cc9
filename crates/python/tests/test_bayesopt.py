"""gradlab.bayesopt: the study API, save/load, minimize and its errors."""

import math

import numpy as np
import pytest

from gradlab.bayesopt import Study, minimize

SPACE = {"lr": ("log", 1e-4, 1e-1), "layers": ("int", 1, 4), "act": ("cat", ["relu", "tanh"])}


def objective(p):
    return (math.log10(p["lr"]) + 2.0) ** 2 + (p["layers"] - 3) ** 2 + (0.5 if p["act"] == "relu" else 0.0)


def test_ask_tell_types_and_ranges():
    s = Study(SPACE, lag=3, seed=1)
    for _ in range(10):
        t = s.ask()
        p = t.params
        assert list(p) == ["lr", "layers", "act"]
        assert 1e-4 <= p["lr"] <= 1e-1 and isinstance(p["lr"], float)
        assert p["layers"] in (1, 2, 3, 4) and isinstance(p["layers"], int)
        assert p["act"] in ("relu", "tanh")
        s.tell(t, objective(p))
    best, value = s.best
    assert value == min(t["value"] for t in s.trials)
    assert len(s) == 10


def test_save_load_continues_exactly(tmp_path):
    a = Study(SPACE, lag="inf", seed=4)
    for _ in range(9):
        t = a.ask()
        a.tell(t.id, objective(t.params))
    a.save(tmp_path / "study.json")
    b = Study.load(tmp_path / "study.json")
    for _ in range(3):
        ta, tb = a.ask(), b.ask()
        assert ta.params == tb.params
        a.tell(ta, objective(ta.params))
        b.tell(tb, objective(tb.params))


def test_batches_and_failures():
    s = Study({"x": (-1.0, 1.0)}, q=3, seed=0)
    ts = s.ask_batch()
    assert len(ts) == 3 and len({t.id for t in ts}) == 3
    s.tell(ts[0], 0.5)
    s.tell(ts[1], float("nan"))
    s.tell_failed(ts[2], "diverged")
    states = [t["state"] for t in s.trials]
    assert states == ["complete", "failed", "failed"]
    with pytest.raises(ValueError, match="already told"):
        s.tell(ts[0], 1.0)


def test_minimize_finds_the_minimum():
    calls = []

    def f(x):
        calls.append(list(x))
        return (x[0] - 0.3) ** 2 + (x[1] + 0.5) ** 2

    res = minimize(f, [(-2.0, 2.0), (-2.0, 2.0)], n_calls=30, random_state=0)
    assert len(calls) == 30 and len(res.x_iters) == 30 and res.func_vals.shape == (30,)
    assert res.x_iters == calls
    assert res.fun == pytest.approx(res.func_vals.min())
    assert res.fun < 0.02
    assert abs(res.x[0] - 0.3) < 0.2 and abs(res.x[1] + 0.5) < 0.2


def test_acq_func_names_as_scikit_optimize():
    f = lambda x: (x[0] - 0.3) ** 2 + (x[1] + 0.5) ** 2  # noqa: E731
    names = ["EI", "PI", "LCB", "gp_hedge", "LogEI"]
    runs = {a: minimize(f, [(-2.0, 2.0), (-2.0, 2.0)], n_calls=14, acq_func=a) for a in names}
    # Absent: the study default (GP-Hedge with eta = 0.1), the same as None.
    default = minimize(f, [(-2.0, 2.0), (-2.0, 2.0)], n_calls=14)
    assert default.x_iters == minimize(f, [(-2.0, 2.0), (-2.0, 2.0)], n_calls=14, acq_func=None).x_iters
    # The same initial design, then each acquisition goes its own way.
    for r in runs.values():
        assert r.x_iters[:5] == default.x_iters[:5] and r.fun < 0.5
    # scikit-optimize's four go four ways (LogEI may match EI: same maximiser in exact arithmetic).
    assert len({tuple(map(tuple, runs[a].x_iters)) for a in ["EI", "PI", "LCB", "gp_hedge"]}) == 4
    s = Study({"x": (0.0, 1.0)}, acq_func="gp_hedge")
    for _ in range(8):
        t = s.ask()
        s.tell(t, (t.params["x"] - 0.2) ** 2)
    with pytest.raises(ValueError, match="acq_func"):
        minimize(f, [(0.0, 1.0), (0.0, 1.0)], n_calls=3, acq_func="UCB")
    with pytest.raises(ValueError, match="gp_hedge"):
        Study({"x": (0.0, 1.0)}, acq_func="hedge")


def test_minimize_mixed_space_and_errors():
    res = minimize(lambda x: (x[0] - 2) ** 2 + (0 if x[1] == "b" else 1), [(0, 5), ["a", "b"]], n_calls=12)
    assert isinstance(res.x[0], int) and res.x[1] in ("a", "b")

    def boom(x):
        raise RuntimeError("objective failed")

    with pytest.raises(RuntimeError, match="objective failed"):
        minimize(boom, [(0.0, 1.0)], n_calls=5)
    with pytest.raises(TypeError, match="float"):
        minimize(lambda x: "no", [(0.0, 1.0)], n_calls=2)


def test_bad_spaces_raise():
    with pytest.raises(ValueError, match="lr.low"):
        Study({"lr": ("log", -1.0, 1.0)})
    with pytest.raises(ValueError, match="x.high"):
        Study({"x": (1.0, 0.0)})
    with pytest.raises(ValueError, match="parameter `y`"):
        Study({"y": ("bogus", 1, 2)})
    with pytest.raises(ValueError, match="lag"):
        Study({"x": (0.0, 1.0)}, lag=0)
    with pytest.raises(ValueError, match="q = 0"):
        Study({"x": (0.0, 1.0)}, q=0)
    with pytest.raises(FileNotFoundError):
        Study.load("/nonexistent/study.json")


def test_noisy_objective_with_the_posterior_mean_incumbent():
    rng = np.random.default_rng(3)
    study = Study({"x": ("float", -2.0, 2.0)}, incumbent="posterior_mean", seed=1)
    assert study.best_by_posterior_mean is None
    for _ in range(25):
        t = study.ask()
        study.tell(t, (t.params["x"] - 0.5) ** 2 + 0.3 * rng.normal())
    study.ask()
    params, mean = study.best_by_posterior_mean
    # the smoothed incumbent sits near the true minimum, and its reported value is not the
    # winner's-curse low of the noisy observations
    assert abs(params["x"] - 0.5) < 0.5
    assert mean > study.best[1]
    with pytest.raises(ValueError, match="incumbent"):
        Study({"x": ("float", 0.0, 1.0)}, incumbent="lowest")
