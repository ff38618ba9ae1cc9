"""gradlab.landscape on analytic objectives."""

import numpy as np
import pytest

from gradlab.landscape import hessian_eigs, surface


def spd(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q @ np.diag(np.linspace(-2.0, 10.0, n)) @ q.T


def test_surface_of_a_quadratic(rng):
    a = spd(rng, 6)
    theta = rng.normal(size=6)
    loss = lambda x: 0.5 * float(x @ a @ x)
    d1, d2 = rng.normal(size=6), rng.normal(size=6)
    xs, ys, z = surface(loss, theta, d1, d2, x=(-1.0, 2.0, 7), y=(-0.5, 0.5, 5))
    assert z.shape == (5, 7)
    np.testing.assert_allclose(xs, np.linspace(-1, 2, 7))
    for j, b in enumerate(ys):
        for i, x in enumerate(xs):
            assert z[j, i] == pytest.approx(loss(theta + x * d1 + b * d2), rel=1e-12)
    xs, ys, z = surface(loss, theta, d1, x=(0.0, 1.0, 3))
    assert z.shape == (1, 3) and z[0, 0] == pytest.approx(loss(theta))


def test_hessian_eigs_match_numpy(rng):
    n = 30
    a = spd(rng, n)
    ref = np.linalg.eigh(a)[0]
    vals, vecs = hessian_eigs(np.zeros(n), k=3, hvp=lambda v: a @ v)
    np.testing.assert_allclose(vals, ref[::-1][:3], rtol=1e-8)
    for v, lam in zip(vecs, vals):
        np.testing.assert_allclose(a @ v, lam * v, atol=1e-6)
    vals, _ = hessian_eigs(np.zeros(n), k=2, hvp=lambda v: a @ v, which="smallest")
    np.testing.assert_allclose(vals, ref[:2], rtol=1e-8)
    # from gradients (central differences; exact for a quadratic up to rounding)
    theta = rng.normal(size=n)
    vals, _ = hessian_eigs(theta, k=3, grad=lambda x: a @ x)
    np.testing.assert_allclose(vals, ref[::-1][:3], rtol=1e-6)


def test_errors_propagate_and_inputs_are_checked(rng):
    def bad(v):
        raise KeyError("inside hvp")

    with pytest.raises(KeyError, match="inside hvp"):
        hessian_eigs(np.zeros(4), k=1, hvp=bad)
    with pytest.raises(ValueError, match="length 3, expected 4"):
        hessian_eigs(np.zeros(4), k=1, hvp=lambda v: v[:3])
    with pytest.raises(ValueError, match="exactly one"):
        hessian_eigs(np.zeros(4), k=1)
    with pytest.raises(ValueError, match=r"theta\[1\]"):
        hessian_eigs(np.array([0.0, np.nan]), k=1, hvp=lambda v: v)
    with pytest.raises(ValueError, match="k"):
        hessian_eigs(np.zeros(4), k=9, hvp=lambda v: v)
    with pytest.raises(ZeroDivisionError):
        surface(lambda x: 1 / 0, np.zeros(2), np.ones(2), x=(0, 1, 3))
    with pytest.raises(ValueError, match="axis"):
        surface(lambda x: 0.0, np.zeros(2), np.ones(2), x=(1, 0, 3))
    with pytest.raises(TypeError, match="int64"):
        surface(lambda x: 0.0, np.zeros(2, dtype=np.int64), np.ones(2))
    # float32 inputs are accepted (widened exactly)
    _, _, z = surface(lambda x: float(x.sum()), np.zeros(2, np.float32), np.ones(2, np.float32), x=(0, 1, 2))
    np.testing.assert_allclose(z, [[0.0, 2.0]])


def test_random_direction_filter_normalised(rng):
    from gradlab.landscape import random_direction

    w = rng.normal(size=(3, 4))
    b = rng.normal(size=3)
    theta = np.concatenate([w.ravel(), b])
    d = random_direction(theta, shapes=[(3, 4), (3,)], seed=5)
    dw = d[:12].reshape(3, 4)
    np.testing.assert_allclose(np.linalg.norm(dw, axis=1), np.linalg.norm(w, axis=1), rtol=1e-6)
    assert np.all(d[12:] == 0)
    np.testing.assert_array_equal(d, random_direction(theta, shapes=[(3, 4), (3,)], seed=5))
    assert not np.array_equal(d, random_direction(theta, shapes=[(3, 4), (3,)], seed=6))
    whole = random_direction(theta, seed=1)
    assert np.linalg.norm(whole) == pytest.approx(np.linalg.norm(theta), rel=1e-6)
    with pytest.raises(ValueError, match="normalization"):
        random_direction(theta, normalization="bogus")
    with pytest.raises(ValueError):
        random_direction(theta, shapes=[(3, 3)])


def test_pca_directions_match_numpy_svd(rng):
    from gradlab.landscape import pca_directions

    traj = rng.normal(size=(8, 20))
    ref = traj[-1]
    dirs, ratio = pca_directions(traj, ref, k=2, center=False)
    m = traj - ref
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    for k in range(2):
        assert abs(abs(dirs[k] @ vt[k]) - 1.0) < 1e-8
    np.testing.assert_allclose(ratio, (s**2 / (s**2).sum())[:2], rtol=1e-8)
    with pytest.raises(ValueError, match="columns"):
        pca_directions(traj, ref[:5])
