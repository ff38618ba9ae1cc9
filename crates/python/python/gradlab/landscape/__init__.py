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
"""

from __future__ import annotations

from .._gradlab import hessian_eigs, pca_directions, random_direction, surface

__all__ = ["surface", "hessian_eigs", "random_direction", "pca_directions"]
