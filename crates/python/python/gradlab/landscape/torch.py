"""PyTorch models as flat-vector objectives for :mod:`gradlab.landscape` (optional: needs torch).

:class:`Objective` takes an ``nn.Module``, a loss function and FIXED batches (a list of
``(x, y)`` pairs, one ``(x, y)`` pair, or a ``DataLoader``, read once) and gives the callables
that ``gradlab.landscape.surface`` and ``hessian_eigs`` take, over one flat float64 numpy vector
of the module's trainable parameters (``named_parameters()`` order, those with
``requires_grad``):

- ``loss(theta) -> float`` and ``grad(theta) -> ndarray`` at any point ``theta``;
- ``hvp(v) -> ndarray``, the exact Hessian-vector product (double backward through
  ``torch.autograd``) at the centre ``obj.theta`` (the module's parameters when the objective
  was made; move it with ``set_theta``).

The loss over the batches is ``sum_b n_b * loss_fn(model(x_b), y_b) / sum_b n_b`` (``n_b`` the
batch size, the first dimension of ``x_b``): the mean over all samples when ``loss_fn`` averages
over its batch (``reduction="mean"``, the default of torch's losses); gradients and
Hessian-vector products are weighted the same way.

The objective works on its own copy of the model, cast to ``dtype`` (float64 by default, so
that the Hessian's small eigenvalues are not lost to float32 rounding; ``dtype=torch.float32``
is about twice as fast). The module you pass is never modified: evaluations at other points go
through ``torch.func.functional_call`` with parameters that are views of one flat tensor, so no
autograd graph outlives a call except the gradient graph at the centre that ``hvp`` keeps
(``keep_graph``, by default when there is a single batch, like PyHessian). The model is put in
``eval()`` mode (dropout off, batch norm on its running statistics) unless ``train=True``.

Three lines for a spectrum or a surface of your model::

    >>> import numpy as np, torch
    >>> from torch import nn
    >>> import gradlab.landscape as gl
    >>> from gradlab.landscape.torch import Objective
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    >>> x = torch.randn(64, 3); y = x.sum(1, keepdim=True)
    >>> obj = Objective(model, nn.MSELoss(), [(x, y)])
    >>> obj.theta.shape, obj.shapes
    ((41,), [(8, 3), (8,), (1, 8), (1,)])
    >>> vals, vecs = gl.hessian_eigs(obj.theta, k=3, hvp=obj.hvp)
    >>> vals.shape, bool(vals[0] >= vals[1] >= vals[2])
    ((3,), True)
    >>> d1 = gl.random_direction(obj.theta, shapes=obj.shapes, seed=1)
    >>> d2 = gl.random_direction(obj.theta, shapes=obj.shapes, seed=2)
    >>> xs, ys, z = gl.surface(obj.loss, obj.theta, d1, d2, x=(-1, 1, 11), y=(-1, 1, 11))
    >>> z.shape, bool(np.isclose(z[5, 5], obj.loss(obj.theta)))
    ((11, 11), True)

The same through the objective's shortcuts, and the loss agrees with torch's own::

    >>> vals2, _ = obj.hessian_eigs(k=3)
    >>> bool(np.allclose(vals, vals2))
    True
    >>> xs, ys, z = obj.surface(seed=1, x=(-1, 1, 5), y=(-1, 1, 5))
    >>> z.shape
    (5, 5)
    >>> bool(np.isclose(obj.loss(obj.theta), nn.MSELoss()(model(x), y).item(), rtol=1e-6))
    True

Parameters as one vector, and back (``shapes`` is what ``random_direction(shapes=...)`` takes)::

    >>> from gradlab.landscape.torch import flatten, assign
    >>> theta, shapes = flatten(model)
    >>> theta.dtype, len(theta), shapes[0]
    (dtype('float64'), 41, (8, 3))
    >>> assign(model, theta)     # writes into the module in place, each parameter in its dtype
"""

from __future__ import annotations

import copy
import threading
from typing import Any, List, Optional, Tuple

import numpy as np

try:
    import torch
    from torch.func import functional_call
except ImportError as e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "gradlab.landscape.torch needs PyTorch (>= 2.0): `pip install torch` "
        "(the CPU wheel: --index-url https://download.pytorch.org/whl/cpu). "
        "The rest of gradlab.landscape works without it."
    ) from e

from . import hessian_eigs as _hessian_eigs
from . import random_direction as _random_direction
from . import surface as _surface

__all__ = ["Objective", "assign", "flatten", "shapes"]


def _trainable(module: torch.nn.Module) -> List[Tuple[str, torch.Tensor]]:
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def shapes(module: torch.nn.Module) -> List[Tuple[int, ...]]:
    """Shapes of the module's trainable parameters in ``named_parameters()`` order."""
    return [tuple(p.shape) for _, p in _trainable(module)]


def flatten(module: torch.nn.Module) -> Tuple[np.ndarray, List[Tuple[int, ...]]]:
    """The trainable parameters of ``module`` as one float64 vector (``named_parameters()``
    order, each tensor in row-major order), and their shapes."""
    ps = [p for _, p in _trainable(module)]
    if not ps:
        raise ValueError("module: it has no trainable parameters (requires_grad=True)")
    with torch.no_grad():
        theta = torch.cat([p.detach().reshape(-1).to("cpu", torch.float64) for p in ps]).numpy()
    return theta, [tuple(p.shape) for p in ps]


def _vector(a: Any, n: int, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real numeric vector, got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] != n:
        got = f"length {arr.shape[0]}" if arr.ndim == 1 else f"shape {arr.shape}"
        raise ValueError(f"{name} has {got}, expected a vector of length {n} (the model's trainable parameter count)")
    return arr


def assign(module: torch.nn.Module, theta: Any) -> None:
    """Writes the flat vector ``theta`` (as from :func:`flatten`) into the module's trainable
    parameters in place (``vector_to_parameters`` without changing their dtype or device)."""
    ps = [p for _, p in _trainable(module)]
    n = sum(p.numel() for p in ps)
    t = torch.from_numpy(np.array(_vector(theta, n, "theta"), dtype=np.float64))
    with torch.no_grad():
        off = 0
        for p in ps:
            p.copy_(t[off : off + p.numel()].view(p.shape))
            off += p.numel()


def _move(obj: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Tensors (and numpy arrays) to the model's device; floating ones to its dtype."""
    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(obj)
    if isinstance(obj, torch.Tensor):
        obj = obj.detach()
        return obj.to(device, dtype) if obj.is_floating_point() else obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move(o, device, dtype) for o in obj)
    if isinstance(obj, dict):
        return {k: _move(v, device, dtype) for k, v in obj.items()}
    return obj


def _batch_size(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        if x.dim() == 0:
            raise ValueError("batches: an input x is a 0-d tensor; expected a batch (first dimension = samples)")
        return int(x.shape[0])
    if isinstance(x, (list, tuple)) and x:
        return _batch_size(x[0])
    if isinstance(x, dict) and x:
        return _batch_size(next(iter(x.values())))
    raise TypeError(f"batches: cannot tell the batch size of an input of type {type(x).__name__}")


class Objective:
    """Loss, gradient and exact Hessian-vector products of ``loss_fn(model(x), y)`` on fixed
    batches, as functions of one flat float64 vector (see the module documentation).

    ``batches``: a list of ``(x, y)`` pairs, one ``(x, y)`` pair, or any iterable of them such
    as a ``DataLoader`` (iterated once, here; shuffling is frozen at that moment). ``x`` may be
    a tensor, a tuple of tensors (the model is called as ``model(*x)``) or a dict
    (``model(**x)``). Floating tensors are cast to ``dtype`` and moved to the model's device.

    ``dtype``: the precision of the copy of the model the objective evaluates (float64 by
    default). ``train``: evaluate in ``train()`` mode instead of ``eval()``. ``keep_graph``:
    keep the gradient graph at the centre between ``hvp`` calls (each call is then one
    backward pass instead of two; costs the activations of every batch in memory); default:
    only when there is a single batch.

    Attributes: ``theta`` (a copy of the centre), ``shapes``, ``names``, ``n`` (the number of
    parameters), ``num_samples``, ``model`` (the objective's own copy; do not modify it).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Any,
        batches: Any,
        *,
        dtype: torch.dtype = torch.float64,
        train: bool = False,
        keep_graph: Optional[bool] = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise TypeError("loss_fn: expected a callable loss_fn(output, target) -> scalar tensor")
        if dtype not in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype = {dtype}: allowed: torch.float64, torch.float32, torch.float16, torch.bfloat16")
        self.dtype = dtype
        self.model = copy.deepcopy(model).to(dtype=dtype)
        self.model.train(train)
        named = _trainable(self.model)
        if not named:
            raise ValueError("model: it has no trainable parameters (requires_grad=True)")
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self._sizes = [p.numel() for _, p in named]
        self.n = sum(self._sizes)
        self.device = named[0][1].device
        with torch.no_grad():
            self._center = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        for _, p in named:  # the flat vector is differentiated, not the module's own tensors
            p.requires_grad_(False)
        self.loss_fn = loss_fn
        if isinstance(batches, tuple) and len(batches) == 2 and isinstance(batches[0], (torch.Tensor, np.ndarray)):
            batches = [batches]
        self._batches = []
        for i, b in enumerate(batches):
            try:
                x, y = b
            except (TypeError, ValueError):
                raise TypeError(f"batches[{i}]: expected an (x, y) pair, got {type(b).__name__}") from None
            self._batches.append((_move(x, self.device, dtype), _move(y, self.device, dtype), _batch_size(x)))
        if not self._batches:
            raise ValueError("batches: empty; expected at least one (x, y) pair")
        self.num_samples = sum(nb for _, _, nb in self._batches)
        self._batches = [(x, y, nb / self.num_samples) for x, y, nb in self._batches]
        self.keep_graph = len(self._batches) == 1 if keep_graph is None else bool(keep_graph)
        self._graph: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        self._lock = threading.RLock()

    # -- helpers ---------------------------------------------------------------------------
    def _tensor(self, a: Any, name: str) -> torch.Tensor:
        arr = _vector(a, self.n, name)
        return torch.tensor(arr, dtype=self.dtype, device=self.device)

    def _batch_loss(self, flat: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        params = {n: t.view(s) for n, t, s in zip(self.names, flat.split(self._sizes), self.shapes)}
        if isinstance(x, dict):
            out = functional_call(self.model, params, args=(), kwargs=x)
        else:
            out = functional_call(self.model, params, tuple(x) if isinstance(x, (list, tuple)) else (x,))
        loss = self.loss_fn(out, y)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor (use reduction='mean' or 'sum')")
        return loss.reshape(())

    @staticmethod
    def _numpy(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().to("cpu", torch.float64).numpy())

    # -- the callables ---------------------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """The centre (where ``hvp`` is taken), a float64 copy."""
        return self._numpy(self._center).copy()

    def set_theta(self, theta: Any) -> None:
        """Moves the centre to ``theta`` (the Hessian of ``hvp`` is then taken there)."""
        t = self._tensor(theta, "theta")
        with self._lock:
            self._center, self._graph = t, None

    def loss(self, theta: Any) -> float:
        """The loss at ``theta`` (no autograd graph is built)."""
        flat = self._tensor(theta, "theta")
        with self._lock, torch.no_grad():
            return float(sum(w * self._batch_loss(flat, x, y).item() for x, y, w in self._batches))

    def loss_and_grad(self, theta: Any) -> Tuple[float, np.ndarray]:
        """The loss and its gradient at ``theta`` (one forward and backward pass per batch)."""
        flat = self._tensor(theta, "theta").requires_grad_(True)
        total, g = 0.0, torch.zeros_like(flat)
        with self._lock, torch.enable_grad():
            for x, y, w in self._batches:
                loss = self._batch_loss(flat, x, y)
                (gb,) = torch.autograd.grad(loss, flat)
                total += w * loss.item()
                g.add_(gb, alpha=w)
        return total, self._numpy(g)

    def grad(self, theta: Any) -> np.ndarray:
        """The gradient of the loss at ``theta``, float64."""
        return self.loss_and_grad(theta)[1]

    def _center_graph(self) -> Tuple[torch.Tensor, torch.Tensor]:
        leaf = self._center.clone().requires_grad_(True)
        g = torch.zeros_like(leaf)
        for x, y, w in self._batches:
            (gb,) = torch.autograd.grad(self._batch_loss(leaf, x, y), leaf, create_graph=True)
            g = g + w * gb
        return leaf, g

    @staticmethod
    def _second(leaf: torch.Tensor, g: torch.Tensor, v: torch.Tensor, retain: bool) -> torch.Tensor:
        if not g.requires_grad:  # the loss is affine in the parameters: H = 0
            return torch.zeros_like(leaf)
        (hv,) = torch.autograd.grad(g, leaf, grad_outputs=v, retain_graph=retain, allow_unused=True)
        return torch.zeros_like(leaf) if hv is None else hv

    def hvp(self, v: Any) -> np.ndarray:
        """The exact Hessian-vector product ``H v`` at the centre ``theta``, float64."""
        vt = self._tensor(v, "v")
        with self._lock, torch.enable_grad():
            if self.keep_graph:
                if self._graph is None:
                    self._graph = self._center_graph()
                hv = self._second(*self._graph, vt, retain=True)
            else:
                hv = torch.zeros_like(vt)
                for x, y, w in self._batches:
                    leaf = self._center.clone().requires_grad_(True)
                    (gb,) = torch.autograd.grad(self._batch_loss(leaf, x, y), leaf, create_graph=True)
                    hv.add_(self._second(leaf, gb, vt, retain=False), alpha=w)
        return self._numpy(hv)

    def release_graph(self) -> None:
        """Frees the gradient graph kept for ``hvp`` (rebuilt on the next call)."""
        with self._lock:
            self._graph = None

    def write_to(self, module: torch.nn.Module, theta: Any = None) -> None:
        """Writes ``theta`` (default: the centre) into ``module``'s parameters (see :func:`assign`)."""
        assign(module, self.theta if theta is None else theta)

    # -- shortcuts -------------------------------------------------------------------------
    def hessian_eigs(self, k: int = 3, **kwargs: Any) -> Tuple[np.ndarray, np.ndarray]:
        """``gradlab.landscape.hessian_eigs(self.theta, k, hvp=self.hvp, **kwargs)``: the ``k``
        largest (``which="smallest"``: smallest) Hessian eigenvalues and eigenvectors at the centre."""
        return _hessian_eigs(self.theta, k, hvp=self.hvp, **kwargs)

    def directions(self, k: int = 2, seed: int = 0, **kwargs: Any) -> List[np.ndarray]:
        """``k`` filter-normalised random directions (``gradlab.landscape.random_direction`` with
        ``shapes=self.shapes`` and seeds ``seed, seed + 1, ...``; ``kwargs``: ``normalization``,
        ``vectors``)."""
        theta = self.theta
        return [_random_direction(theta, shapes=self.shapes, seed=seed + i, **kwargs) for i in range(k)]

    def surface(
        self,
        d1: Optional[Any] = None,
        d2: Optional[Any] = None,
        *,
        seed: int = 0,
        x: Tuple[float, float, int] = (-1.0, 1.0, 21),
        y: Tuple[float, float, int] = (-1.0, 1.0, 21),
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The loss on the plane ``theta + a d1 + b d2`` (``gradlab.landscape.surface``); without
        directions, two filter-normalised random ones from ``seed``."""
        if d1 is None:
            if d2 is not None:
                raise ValueError("d2 given without d1")
            d1, d2 = self.directions(2, seed=seed)
        return _surface(self.loss, self.theta, d1, d2, x=x, y=y)

    def __repr__(self) -> str:
        return (
            f"Objective({type(self.model).__name__}, n={self.n}, batches={len(self._batches)}, "
            f"samples={self.num_samples}, dtype={self.dtype})"
        )
