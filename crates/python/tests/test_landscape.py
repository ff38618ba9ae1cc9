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


# --- trace, density, connectivity, export --------------------------------------------------

from gradlab.landscape import bezier, density, line, linear_path, save_surface, trace, write_vtk  # noqa: E402


def test_trace_estimates_are_within_their_stated_error(rng):
    a = spd(rng, 40)
    exact = float(np.trace(a))
    for method, products in (("hutch++", 60), ("hutchinson", 200)):
        t = trace(np.zeros(40), hvp=lambda v: a @ v, products=products, method=method, seed=3)
        assert t["products"] == products
        assert abs(t["trace"] - exact) < 4 * t["std_error"], (method, t, exact)
    # with the sketch covering the whole space Hutch++ is exact
    t = trace(np.zeros(5), hvp=lambda v: a[:5, :5] @ v, products=60, seed=1)
    assert t["trace"] == pytest.approx(np.trace(a[:5, :5]), rel=1e-10)
    # products from gradients by central differences equal the exact products here
    tg = trace(np.zeros(40), grad=lambda x: a @ x, products=60, seed=3)
    th = trace(np.zeros(40), hvp=lambda v: a @ v, products=60, seed=3)
    assert tg["trace"] == pytest.approx(th["trace"], rel=1e-8)
    with pytest.raises(ValueError, match="method"):
        trace(np.zeros(3), hvp=lambda v: v, method="exact")
    with pytest.raises(ValueError, match="products"):
        trace(np.zeros(3), hvp=lambda v: v, products=3)
    with pytest.raises(ValueError, match="exactly one"):
        trace(np.zeros(3), hvp=lambda v: v, grad=lambda x: x)


def test_density_nodes_are_the_eigenvalues_of_a_small_matrix(rng):
    a = spd(rng, 6)
    d = density(np.zeros(6), hvp=lambda v: a @ v, probes=3, steps=6, seed=2)
    want = np.linalg.eigvalsh(a)
    for nodes, weights in zip(d["nodes"], d["weights"]):
        np.testing.assert_allclose(np.sort(nodes), want, atol=1e-8)
        assert weights.sum() == pytest.approx(1.0)
    # the smoothed density integrates to 1
    integral = np.sum(0.5 * (d["density"][1:] + d["density"][:-1]) * np.diff(d["grid"]))
    assert integral == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="sigma"):
        density(np.zeros(6), hvp=lambda v: a @ v, sigma=-1.0)


def test_callable_exceptions_reach_the_caller():
    def bad(v):
        raise RuntimeError("boom in hvp")

    with pytest.raises(RuntimeError, match="boom in hvp"):
        trace(np.zeros(4), hvp=bad)
    with pytest.raises(TypeError, match="grad must return"):
        density(np.zeros(4), grad=lambda x: [1.0, 2.0])


def ring(p):
    return float((p @ p - 1.0) ** 2)


def ring_grad(p):
    return 4.0 * (p @ p - 1.0) * p


def test_linear_path_and_bezier_on_the_ring_valley():
    a, b = np.array([-1.0, 0.0]), np.array([1.0, 0.0])
    p = linear_path(ring, a, b, points=21)
    np.testing.assert_allclose(p["t"], np.linspace(0, 1, 21))
    np.testing.assert_allclose(p["loss"], [ring((1 - t) * a + t * b) for t in p["t"]])
    assert p["barrier"] == pytest.approx(1.0) and p["t_max"] == pytest.approx(0.5)
    r = bezier(ring, ring_grad, a, b, control=np.array([0.0, 0.01]), steps=2000, lr=0.02, seed=1)
    assert r["curve"]["barrier"] < 0.1 < r["line"]["barrier"]
    c = r["control"]
    for t, l in zip(r["curve"]["t"], r["curve"]["loss"]):
        x = (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b
        assert l == pytest.approx(ring(x), abs=1e-12)
    assert len(r["history"]) == 2000
    with pytest.raises(ValueError, match="equal lengths"):
        linear_path(ring, a, np.zeros(3))


def test_line_and_exports(tmp_path, rng):
    loss = lambda x: float(x @ x)
    xs, ls = line(loss, np.ones(3), np.array([1.0, 0.0, 0.0]), x=(-2.0, 0.0, 5))
    np.testing.assert_allclose(ls, [(1 + x) ** 2 + 2 for x in xs])
    xs, ys, z = surface(loss, np.zeros(2), np.eye(2)[0], np.eye(2)[1], x=(-1, 1, 4), y=(-1, 1, 3))
    z[0, 0] = np.nan
    paths = save_surface(tmp_path, xs, ys, z, stem="s")
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), z)
    np.testing.assert_array_equal(np.load(tmp_path / "s_x.npy"), xs)
    assert len(paths) == 4
    write_vtk(tmp_path / "s.vtk", xs, ys, z, z_scale=2.0)
    text = (tmp_path / "s.vtk").read_text().splitlines()
    assert text[3] == "DATASET STRUCTURED_GRID" and text[4] == "DIMENSIONS 4 3 1"
    # the second point: (xs[1], ys[0], 2·z[0, 1])
    assert [float(v) for v in text[7].split()] == pytest.approx([xs[1], ys[0], 2 * z[0, 1]])
    with pytest.raises(ValueError, match="shape"):
        save_surface(tmp_path, xs, ys, z.T)


def test_hessian_eigs_warns_when_it_stops_unconverged(rng):
    n = 200
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    a = q @ np.diag(np.linspace(0.0, 1.0, n) ** 4) @ q.T  # clustered top of the spectrum
    with pytest.warns(RuntimeWarning, match="not converged"):
        hessian_eigs(np.zeros(n), k=3, hvp=lambda v: a @ v, max_steps=8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vals, _ = hessian_eigs(np.zeros(n), k=3, hvp=lambda v: a @ v)  # default cap: converges
    np.testing.assert_allclose(vals, np.sort(np.linalg.eigvalsh(a))[::-1][:3], rtol=1e-8)
