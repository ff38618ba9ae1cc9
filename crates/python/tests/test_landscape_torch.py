"""gradlab.landscape.torch against independent references: torch's own loss and backward, finite
differences of gradients, the dense Hessian of torch.autograd.functional.hessian, and
numpy.linalg.eigvalsh."""

import doctest
import importlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import gradlab.landscape as gl
from gradlab.landscape import torch as glt
from torch import nn

SIZES = (3, 5, 2)  # tiny tanh MLP: 3*5 + 5 + 5*2 + 2 = 32 parameters


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors: torch's thread pool only adds overhead (and spins on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.Tanh(), nn.Linear(SIZES[1], SIZES[2])).to(dtype)


def data(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, SIZES[0], generator=g, dtype=torch.float64)
    y = torch.randn(n, SIZES[2], generator=g, dtype=torch.float64)
    return x, y


def manual_loss(flat, x, y):
    """The same MLP written out by hand on a flat vector (independent of the module machinery)."""
    a, b, c = SIZES
    o = 0
    w1 = flat[o : o + b * a].view(b, a)
    o += b * a
    b1 = flat[o : o + b]
    o += b
    w2 = flat[o : o + c * b].view(c, b)
    o += c * b
    b2 = flat[o : o + c]
    out = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    return ((out - y) ** 2).mean()


def dense_hessian(theta, x, y):
    t = torch.tensor(theta, dtype=torch.float64)
    return torch.autograd.functional.hessian(lambda f: manual_loss(f, x, y), t).numpy()


def test_flatten_matches_parameters_and_round_trips():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    theta, shapes = glt.flatten(model)
    assert theta.dtype == np.float64 and theta.shape == (32,)
    assert shapes == [(5, 3), (5,), (2, 5), (2,)] == glt.shapes(model)
    ref = torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    np.testing.assert_array_equal(theta, ref)
    glt.assign(model, theta)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # a float32 module keeps its dtype; values are rounded to it
    m32 = mlp(dtype=torch.float32)
    glt.assign(m32, theta + 1.0)
    assert all(p.dtype == torch.float32 for p in m32.parameters())
    np.testing.assert_allclose(glt.flatten(m32)[0], theta + 1.0, rtol=1e-6)


def test_loss_and_grad_equal_torch_on_the_model():
    model = mlp()
    x, y = data(50)
    # two batches of unequal size: the objective is the mean over all 50 samples
    obj = glt.Objective(model, nn.MSELoss(), [(x[:20], y[:20]), (x[20:], y[20:])])
    assert obj.n == 32 and obj.num_samples == 50
    theta = obj.theta
    model.zero_grad()
    loss = nn.MSELoss()(model(x), y)
    loss.backward()
    ref_g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
    assert obj.loss(theta) == pytest.approx(loss.item(), rel=1e-13)
    np.testing.assert_allclose(obj.grad(theta), ref_g, rtol=1e-11, atol=1e-14)
    lv, g = obj.loss_and_grad(theta)
    assert lv == pytest.approx(loss.item(), rel=1e-13)
    np.testing.assert_allclose(g, ref_g, rtol=1e-11, atol=1e-14)
    # at another point: the hand-written model on that point
    rng = np.random.default_rng(0)
    other = theta + 0.3 * rng.normal(size=theta.shape)
    t = torch.tensor(other, requires_grad=True)
    lo = manual_loss(t, x, y)
    lo.backward()
    assert obj.loss(other) == pytest.approx(lo.item(), rel=1e-13)
    np.testing.assert_allclose(obj.grad(other), t.grad.numpy(), rtol=1e-11, atol=1e-14)


def test_evaluations_leave_module_and_centre_unchanged():
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data(30)
    obj = glt.Objective(model, nn.MSELoss(), [(x, y)])
    theta = obj.theta
    rng = np.random.default_rng(1)
    for _ in range(3):
        obj.loss(theta + rng.normal(size=32))
        obj.grad(theta + rng.normal(size=32))
        obj.hvp(rng.normal(size=32))
    np.testing.assert_array_equal(obj.theta, theta)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())
    # obj.theta is a copy: changing it changes nothing
    t = obj.theta
    t[:] = 0.0
    np.testing.assert_array_equal(obj.theta, theta)


@pytest.mark.parametrize("keep_graph", [True, False])
def test_no_tensors_or_graphs_outlive_a_call(keep_graph):
    import gc

    def live_tensors():
        gc.collect()
        return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))

    x, y = data(30)
    obj = glt.Objective(mlp(), nn.MSELoss(), [(x[:10], y[:10]), (x[10:], y[10:])], keep_graph=keep_graph)
    rng = np.random.default_rng(7)
    theta, v = obj.theta, rng.normal(size=32)
    obj.loss(theta), obj.grad(theta), obj.hvp(v)  # the kept graph (if any) is built here
    before = live_tensors()
    for _ in range(20):
        obj.loss(theta + rng.normal(size=32))
        obj.loss_and_grad(theta + rng.normal(size=32))
        obj.hvp(rng.normal(size=32))
    assert live_tensors() == before
    assert (obj._graph is not None) == keep_graph
    obj.release_graph()
    assert obj._graph is None


@pytest.mark.parametrize("keep_graph", [True, False])
def test_hvp_equals_dense_hessian_and_finite_differences(keep_graph):
    model = mlp()
    x, y = data(40)
    obj = glt.Objective(model, nn.MSELoss(), [(x[:25], y[:25]), (x[25:], y[25:])], keep_graph=keep_graph)
    theta = obj.theta
    h = dense_hessian(theta, x, y)
    rng = np.random.default_rng(2)
    for _ in range(3):
        v = rng.normal(size=32)
        hv = obj.hvp(v)
        assert hv.dtype == np.float64 and hv.shape == (32,)
        np.testing.assert_allclose(hv, h @ v, rtol=1e-10, atol=1e-12)
        eps = 1e-5
        fd = (obj.grad(theta + eps * v) - obj.grad(theta - eps * v)) / (2 * eps)
        np.testing.assert_allclose(hv, fd, rtol=1e-6, atol=1e-8)
    # the whole matrix, column by column
    cols = np.stack([obj.hvp(e) for e in np.eye(32)], axis=1)
    np.testing.assert_allclose(cols, h, rtol=1e-10, atol=1e-12)


def test_set_theta_moves_the_hessian():
    model = mlp()
    x, y = data(40)
    obj = glt.Objective(model, nn.MSELoss(), (x, y))  # one (x, y) pair is one batch
    other = obj.theta + 0.5
    v = np.random.default_rng(3).normal(size=32)
    obj.hvp(v)  # builds the kept graph at the old centre
    obj.set_theta(other)
    np.testing.assert_array_equal(obj.theta, other)
    np.testing.assert_allclose(obj.hvp(v), dense_hessian(other, x, y) @ v, rtol=1e-10, atol=1e-12)


def test_hessian_eigs_equal_eigvalsh_of_the_dense_hessian():
    model = mlp()
    x, y = data(64)
    obj = glt.Objective(model, nn.MSELoss(), [(x, y)])
    ref = np.linalg.eigvalsh(dense_hessian(obj.theta, x, y))
    vals, vecs = gl.hessian_eigs(obj.theta, k=3, hvp=obj.hvp)
    np.testing.assert_allclose(vals, ref[::-1][:3], rtol=1e-8)
    for v, lam in zip(vecs, vals):
        np.testing.assert_allclose(obj.hvp(v), lam * v, atol=1e-6 * abs(vals[0]))
    small, _ = obj.hessian_eigs(k=2, which="smallest")
    np.testing.assert_allclose(small, ref[:2], rtol=1e-7, atol=1e-9 * abs(ref[-1]))


def test_surface_through_the_objective():
    model = mlp()
    x, y = data(30)
    obj = glt.Objective(model, nn.MSELoss(), [(x, y)])
    d1, d2 = obj.directions(2, seed=4)
    np.testing.assert_array_equal(d1, gl.random_direction(obj.theta, shapes=obj.shapes, seed=4))
    xs, ys, z = gl.surface(obj.loss, obj.theta, d1, d2, x=(-1, 1, 5), y=(-0.5, 0.5, 3))
    assert z.shape == (3, 5)
    t = torch.tensor(obj.theta + xs[1] * d1 + ys[2] * d2)
    assert z[2, 1] == pytest.approx(manual_loss(t, x, y).item(), rel=1e-12)
    _, _, z2 = obj.surface(d1, d2, x=(-1, 1, 5), y=(-0.5, 0.5, 3))
    np.testing.assert_array_equal(z, z2)


def test_dataloader_is_read_once_and_weighted_by_batch_size():
    model = mlp()
    x, y = data(25)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)
    obj = glt.Objective(model, nn.MSELoss(), loader)
    assert obj.num_samples == 25 and not obj.keep_graph
    assert obj.loss(obj.theta) == pytest.approx(nn.MSELoss()(model(x), y).item(), rel=1e-13)
    v = np.random.default_rng(5).normal(size=32)
    np.testing.assert_allclose(obj.hvp(v), dense_hessian(obj.theta, x, y) @ v, rtol=1e-10, atol=1e-12)


def test_float32_model_is_evaluated_in_float64_by_default():
    model = mlp(dtype=torch.float32)
    x, y = data(40)
    obj = glt.Objective(model, nn.MSELoss(), [(x.float(), y.float())])
    assert obj.model is not model and next(obj.model.parameters()).dtype == torch.float64
    assert next(model.parameters()).dtype == torch.float32  # the caller's module is untouched
    v = np.random.default_rng(6).normal(size=32)
    ref = dense_hessian(obj.theta, x.float().double(), y.float().double()) @ v
    np.testing.assert_allclose(obj.hvp(v), ref, rtol=1e-10, atol=1e-12)
    fast = glt.Objective(model, nn.MSELoss(), [(x, y)], dtype=torch.float32)
    np.testing.assert_allclose(fast.hvp(v), ref, rtol=1e-4, atol=1e-5)


def test_bad_input_raises():
    model = mlp()
    x, y = data(10)
    obj = glt.Objective(model, nn.MSELoss(), [(x, y)])
    with pytest.raises(ValueError, match="length 31, expected a vector of length 32"):
        obj.loss(np.zeros(31))
    with pytest.raises(ValueError, match="length 33"):
        obj.grad(np.zeros(33))
    with pytest.raises(ValueError, match="length 5"):
        obj.hvp(np.zeros(5))
    with pytest.raises(ValueError, match=r"shape \(4, 8\)"):
        obj.set_theta(np.zeros((4, 8)))
    with pytest.raises(ValueError, match="length 3"):
        glt.assign(model, np.zeros(3))
    with pytest.raises(TypeError, match="real numeric"):
        obj.loss(np.array(["a"] * 32))
    with pytest.raises(ValueError, match="empty"):
        glt.Objective(model, nn.MSELoss(), [])
    with pytest.raises(TypeError, match="nn.Module"):
        glt.Objective(lambda t: t, nn.MSELoss(), [(x, y)])
    with pytest.raises(TypeError, match=r"batches\[0\]"):
        glt.Objective(model, nn.MSELoss(), [x])
    with pytest.raises(ValueError, match="scalar"):
        glt.Objective(model, nn.MSELoss(reduction="none"), [(x, y)]).loss(np.zeros(32))
    # through the Rust side: a wrong-length direction is reported there
    with pytest.raises(ValueError):
        gl.surface(obj.loss, obj.theta, np.ones(31))


def test_missing_torch_gives_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "gradlab.landscape.torch")
    with pytest.raises(ImportError, match="needs PyTorch"):
        importlib.import_module("gradlab.landscape.torch")


def test_docstring_examples():
    result = doctest.testmod(glt, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
