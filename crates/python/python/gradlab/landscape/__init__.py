"""Loss landscapes of Python callables over flat float64 parameter vectors.

Example (a quadratic with Hessian diag(1, 2, 3))::

    >>> import numpy as np
    >>> from gradlab.landscape import surface, hessian_eigs
    >>> h = np.array([1.0, 2.0, 3.0])
    >>> loss = lambda x: 0.5 * float(np.sum(h * x * x))
    >>> xs, ys, z = surface(loss, np.zeros(3), np.eye(3)[0], np.eye(3)[1], x=(-1, 1, 5), y=(-1, 1, 5))
    >>> z.shape, float(z[2, 2])
    ((5, 5), 0.0)
    >>> vals, vecs = hessian_eigs(np.zeros(3), k=2, hvp=lambda v: h * v)
    >>> np.round(vals, 8).tolist()
    [3.0, 2.0]

Directions: filter-normalised random ones, or the principal directions of a trajectory::

    >>> theta = np.ones(6)
    >>> d = random_direction(theta, shapes=[(2, 2), (2,)], seed=0)
    >>> d.shape, bool(np.all(d[4:] == 0))       # biases ("vectors") zeroed by default
    ((6,), True)
    >>> traj = np.outer(np.linspace(1, 0, 5), [1.0, 2.0, 0.0])
    >>> dirs, ratio = pca_directions(traj, traj[-1], k=1)
    >>> np.round(np.abs(dirs[0]) * np.sqrt(5), 6).tolist(), round(float(ratio[0]), 6)
    ([1.0, 2.0, 0.0], 1.0)

Trace (Hutch++) and spectral density (stochastic Lanczos quadrature) of the Hessian::

    >>> hd = np.arange(1.0, 51.0)                    # Hessian diag(1, ..., 50), trace 1275
    >>> t = trace(np.zeros(50), hvp=lambda v: hd * v, products=60)
    >>> t["products"], bool(abs(t["trace"] - 1275.0) < 3 * t["std_error"])
    (60, True)
    >>> d = density(np.zeros(3), hvp=lambda v: h * v, probes=2)
    >>> sorted(np.round(d["nodes"][0], 6).tolist())
    [1.0, 2.0, 3.0]

Mode connectivity: the straight line and a trained quadratic Bézier curve between two minima,
and export for ParaView::

    >>> ring = lambda p: float((p @ p - 1.0) ** 2)   # a ring of minima of radius 1
    >>> ring_grad = lambda p: 4.0 * (p @ p - 1.0) * p
    >>> a, b = np.array([-1.0, 0.0]), np.array([1.0, 0.0])
    >>> round(linear_path(ring, a, b, points=3)["barrier"], 6)
    1.0
    >>> r = bezier(ring, ring_grad, a, b, control=np.array([0.0, 0.01]), steps=2000, lr=0.02, seed=1)
    >>> bool(r["curve"]["barrier"] < 0.1)
    True
"""

from __future__ import annotations

import numpy as _np

from .._gradlab import (
    bezier,
    density,
    hessian_eigs,
    linear_path,
    pca_directions,
    random_direction,
    save_surface,
    surface,
    trace,
    write_vtk,
)


def line(loss, theta, d, x=(-1.0, 1.0, 21)):
    """Loss along ``theta + a·d`` for ``a`` on ``x = (min, max, points)``: ``(xs, losses)``.

    >>> xs, ls = line(lambda t: float(t @ t), _np.zeros(2), _np.array([1.0, 0.0]), x=(-1, 1, 3))
    >>> xs.tolist(), ls.tolist()
    ([-1.0, 0.0, 1.0], [1.0, 0.0, 1.0])
    """
    xs, _, z = surface(loss, theta, d, None, x=x)
    return xs, z[0]


__all__ = [
    "surface",
    "line",
    "hessian_eigs",
    "trace",
    "density",
    "random_direction",
    "pca_directions",
    "linear_path",
    "bezier",
    "save_surface",
    "write_vtk",
]
