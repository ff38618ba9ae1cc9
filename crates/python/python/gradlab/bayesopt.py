"""Bayesian optimisation on Gaussian processes with a lazily extended Cholesky factor.

Ask/tell::

    >>> from gradlab.bayesopt import Study
    >>> study = Study({"lr": ("log", 1e-4, 1e-1), "layers": ("int", 1, 4),
    ...                "act": ("cat", ["relu", "tanh"])}, lag=3, seed=0)
    >>> for _ in range(8):
    ...     t = study.ask()
    ...     study.tell(t, (t.params["layers"] - 2) ** 2 + abs(t.params["lr"] - 0.01))
    >>> sorted(study.best[0])
    ['act', 'layers', 'lr']

One call, shaped like ``skopt.gp_minimize``::

    >>> from gradlab.bayesopt import minimize
    >>> res = minimize(lambda x: (x[0] - 0.3) ** 2, [(-1.0, 1.0)], n_calls=15, random_state=0)
    >>> abs(res.x[0] - 0.3) < 0.1, len(res.func_vals)
    (True, 15)
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from . import _gradlab
from ._gradlab import Study, Trial

__all__ = ["Study", "Trial", "minimize", "OptimizeResult"]


class OptimizeResult(dict):
    """Result of :func:`minimize` (a dict with attribute access, like scipy's and skopt's):
    ``x`` (best point, a list), ``fun`` (best value), ``x_iters`` (every evaluated point),
    ``func_vals`` (every value; NaN for a failed evaluation), ``overhead_s`` (model and
    acquisition seconds per ask), ``space`` (parameter names)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self) -> str:
        return f"OptimizeResult(fun={self['fun']!r}, x={self['x']!r}, n={len(self['x_iters'])})"


def minimize(
    func: Callable[[List[Any]], float],
    dimensions: Union[Sequence[Any], Dict[str, Any]],
    n_calls: int = 100,
    n_initial_points: int = 0,
    random_state: int = 0,
    lag: Optional[Union[int, str]] = 3,
    acq_func: Optional[str] = None,
) -> OptimizeResult:
    """Minimise ``func`` over ``dimensions`` in ``n_calls`` evaluations (``skopt.gp_minimize``).

    ``dimensions`` is a list of ``(low, high)`` pairs (floats: a real interval, ints: an
    integer range), ``("log", low, high)``, ``("cat", [choices])`` or lists of strings, or a
    dict ``{name: spec}``. ``func`` receives a list of values in that order. ``n_initial_points``
    is the size of the Latin-hypercube start (0: max(5, 2·dim + 1)); ``lag`` is k (refit the GP
    hyperparameters every k asks), ``"inf"`` or ``"adaptive"``; ``acq_func`` is scikit-optimize's
    (``"EI"``, ``"PI"``, ``"LCB"``, ``"gp_hedge"`` with η = 1) or ``"LogEI"``; ``None`` (default): the
    study default, GP-Hedge over EI, PI and LCB with η = 0.1. An
    exception in ``func`` stops
    the run and propagates. A non-finite return value records a failed evaluation.

    Example::

        >>> res = minimize(lambda x: (x[0] - 1) ** 2 + x[1], [(-2.0, 2.0), (0, 3)], n_calls=12)
        >>> res.x[1]
        0
    """
    return OptimizeResult(
        _gradlab.minimize(func, dimensions, n_calls, n_initial_points, random_state, lag, acq_func)
    )
