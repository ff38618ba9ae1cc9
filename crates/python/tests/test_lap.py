"""gradlab.lap against scipy.optimize.linear_sum_assignment."""

import numpy as np
import pytest

from gradlab.lap import linear_sum_assignment, linear_sum_assignment_many

scipy_optimize = pytest.importorskip("scipy.optimize")


def random_cost(rng, rows, cols, forbidden=0.3):
    c = rng.random((rows, cols))
    c[rng.random((rows, cols)) < forbidden] = np.inf
    return c


def check_valid(cost, r, c):
    assert r.dtype == np.int64 and c.dtype == np.int64
    assert np.all(np.diff(r) > 0), "row_ind ascending, no repeats"
    assert len(set(c.tolist())) == len(c), "each column at most once"
    assert np.all(np.isfinite(cost[r, c])), "no forbidden pair used"


@pytest.mark.parametrize("rows,cols", [(1, 1), (5, 5), (20, 30), (30, 20), (57, 64), (120, 100)])
def test_equals_scipy_optimum_with_forbidden_entries(rng, rows, cols):
    solved = 0
    for _ in range(20):
        cost = random_cost(rng, rows, cols, forbidden=0.3)
        try:
            sr, sc = scipy_optimize.linear_sum_assignment(cost)
        except ValueError:
            with pytest.raises(ValueError, match="infeasible"):
                linear_sum_assignment(cost)
            continue
        r, c = linear_sum_assignment(cost)
        check_valid(cost, r, c)
        assert len(r) == min(rows, cols)
        assert cost[r, c].sum() == pytest.approx(cost[sr, sc].sum(), rel=1e-12, abs=1e-12)
        solved += 1
    assert solved >= 5


@pytest.mark.parametrize("rows,cols", [(8, 8), (40, 50), (50, 40)])
def test_maximize_equals_scipy(rng, rows, cols):
    for _ in range(10):
        cost = rng.normal(size=(rows, cols))
        r, c = linear_sum_assignment(cost, maximize=True)
        sr, sc = scipy_optimize.linear_sum_assignment(cost, maximize=True)
        assert cost[r, c].sum() == pytest.approx(cost[sr, sc].sum(), rel=1e-12)
    # -inf marks forbidden pairs when maximising (as in scipy)
    cost = np.array([[1.0, -np.inf], [5.0, 2.0]])
    r, c = linear_sum_assignment(cost, maximize=True)
    assert c.tolist() == [0, 1]
    sr, sc = scipy_optimize.linear_sum_assignment(cost, maximize=True)
    assert cost[r, c].sum() == cost[sr, sc].sum() == 3.0


def test_layouts_and_dtypes_give_the_same_answer(rng):
    cost = random_cost(rng, 30, 37, forbidden=0.2)
    ref = cost[linear_sum_assignment(cost)].sum()
    big = np.zeros((2 * cost.shape[0], 2 * cost.shape[1]))
    big[::2, 1::2] = cost
    for variant in (
        np.asfortranarray(cost),
        cost.astype(np.float32).astype(np.float64),
        np.ascontiguousarray(cost.T).T,  # Fortran-ordered view
        big[::2, 1::2],  # strided view
    ):
        r, c = linear_sum_assignment(variant)
        assert cost[r, c].sum() == pytest.approx(ref)
    c32 = cost.astype(np.float32)
    r, c = linear_sum_assignment(c32)
    sr, sc = scipy_optimize.linear_sum_assignment(c32.astype(np.float64))
    assert c32.astype(np.float64)[r, c].sum() == pytest.approx(c32.astype(np.float64)[sr, sc].sum())
    r, c = linear_sum_assignment(np.asfortranarray(c32))
    assert c32.astype(np.float64)[r, c].sum() == pytest.approx(c32.astype(np.float64)[sr, sc].sum())


def test_infeasible_and_invalid_inputs_raise():
    inf = np.inf
    with pytest.raises(ValueError, match="infeasible"):
        linear_sum_assignment(np.array([[1.0, inf], [2.0, inf]]))
    with pytest.raises(ValueError, match=r"NaN at \(0, 1\)"):
        linear_sum_assignment(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="-inf"):
        linear_sum_assignment(np.array([[1.0, -inf], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="maximize"):
        linear_sum_assignment(np.array([[1.0, inf], [2.0, 3.0]]), maximize=True)
    with pytest.raises(TypeError, match="int64"):
        linear_sum_assignment(np.array([[1, 2], [3, 4]]))
    with pytest.raises(TypeError, match="ndarray"):
        linear_sum_assignment([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="2-D"):
        linear_sum_assignment(np.ones(3))
    with pytest.raises(ValueError, match="unmatched_cost"):
        linear_sum_assignment(np.ones((2, 2)), unmatched_cost=np.inf)


def test_tall_and_fortran_matrices(rng):
    # Tall matrices are solved as their transpose; the pairs must come back as (row, col) of
    # the original, rows ascending, for either memory order and dtype.
    for rows, cols in [(30, 45), (45, 30)]:
        cost = random_cost(rng, rows, cols, forbidden=0.2)
        for c in (np.asfortranarray(cost), np.asfortranarray(cost.astype(np.float32))):
            r, k = linear_sum_assignment(c)
            check_valid(cost, r, k)
            sr, sc = scipy_optimize.linear_sum_assignment(c.astype(np.float64))
            assert c[r, k].astype(np.float64).sum() == pytest.approx(c[sr, sc].astype(np.float64).sum())
            neg = np.asfortranarray(np.where(np.isinf(c), -np.inf, c))
            r, k = linear_sum_assignment(neg, maximize=True)
            sr, sc = scipy_optimize.linear_sum_assignment(neg.astype(np.float64), maximize=True)
            assert neg[r, k].astype(np.float64).sum() == pytest.approx(neg[sr, sc].astype(np.float64).sum())


def test_empty_matrices():
    for shape in [(0, 0), (0, 3), (3, 0)]:
        r, c = linear_sum_assignment(np.zeros(shape))
        assert r.size == 0 and c.size == 0


def test_partial_matchings(rng):
    inf = np.inf
    cost = np.array([[1.0, inf], [2.0, inf]])
    r, c = linear_sum_assignment(cost, partial=True)
    assert r.tolist() == [0] and c.tolist() == [0]
    # unmatched_cost u: the optimum of [C | diag(u)] with the dummy columns forbidden off the
    # diagonal, solved by scipy.
    for _ in range(10):
        rows, cols, u = 25, 30, 0.4
        cost = random_cost(rng, rows, cols, forbidden=0.5)
        r, c = linear_sum_assignment(cost, unmatched_cost=u)
        check_valid(cost, r, c)
        ours = cost[r, c].sum() + u * (rows - len(r))
        dummy = np.full((rows, rows), inf)
        np.fill_diagonal(dummy, u)
        aug = np.concatenate([cost, dummy], axis=1)
        sr, sc = scipy_optimize.linear_sum_assignment(aug)
        assert ours == pytest.approx(aug[sr, sc].sum())


def test_many_equals_one_by_one(rng):
    mats = [random_cost(rng, n, n + 3, forbidden=0.1) for n in (3, 10, 25)]
    out = linear_sum_assignment_many(mats)
    for m, (r, c) in zip(mats, out):
        r1, c1 = linear_sum_assignment(m)
        assert m[r, c].sum() == pytest.approx(m[r1, c1].sum())
    with pytest.raises(TypeError, match=r"cost_matrices\[1\]"):
        linear_sum_assignment_many([np.ones((2, 2)), np.ones((2, 2), dtype=np.int32)])


def test_no_leak_over_10k_calls(rng):
    import resource

    cost = random_cost(rng, 60, 70, forbidden=0.2)
    for _ in range(1000):
        linear_sum_assignment(cost)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for _ in range(10_000):
        linear_sum_assignment(cost)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    # One call allocates ≈ 100 KiB (the CSR copy); a leak of it would grow RSS by ≈ 1 GB.
    assert grown_kib < 20_000, grown_kib
