"""Linear assignment: scipy's ``linear_sum_assignment`` on gradlab's sparse LAP solver.

Example::

    >>> import numpy as np
    >>> from gradlab.lap import linear_sum_assignment
    >>> cost = np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    >>> row_ind, col_ind = linear_sum_assignment(cost)
    >>> col_ind.tolist(), float(cost[row_ind, col_ind].sum())
    ([1, 0, 2], 5.0)
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

import numpy as np

from . import _gradlab

__all__ = ["linear_sum_assignment", "linear_sum_assignment_many"]


def linear_sum_assignment(
    cost_matrix: np.ndarray,
    maximize: bool = False,
    *,
    partial: bool = False,
    unmatched_cost: Optional[float] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Solve the linear sum assignment problem, as ``scipy.optimize.linear_sum_assignment``.

    ``cost_matrix`` is a 2-D float32 or float64 array (any memory order, any shape
    ``rows x cols``); ``inf`` marks a forbidden pair (``-inf`` with ``maximize=True``).
    Returns ``(row_ind, col_ind)`` (int64, ``row_ind`` ascending): row ``row_ind[k]`` is
    assigned to column ``col_ind[k]``, ``min(rows, cols)`` pairs, of minimum total cost (maximum
    with ``maximize=True``). Raises ``ValueError`` if no such full matching exists
    ("infeasible"), or for NaN entries.

    Beyond scipy: ``partial=True`` returns a maximum-cardinality matching of minimum cost
    instead of raising when the forbidden pairs leave no full matching; ``unmatched_cost=u``
    lets any row stay unmatched at cost ``u`` (pairs cost more than ``u`` are never used).

    Example::

        >>> import numpy as np
        >>> cost = np.array([[1.0, np.inf], [np.inf, 2.0]])
        >>> [a.tolist() for a in linear_sum_assignment(cost)]
        [[0, 1], [0, 1]]
    """
    return _gradlab.linear_sum_assignment(
        cost_matrix, maximize, partial=partial, unmatched_cost=unmatched_cost
    )


def linear_sum_assignment_many(
    cost_matrices: Iterable[np.ndarray],
    maximize: bool = False,
    *,
    partial: bool = False,
    unmatched_cost: Optional[float] = None,
) -> List[Tuple[np.ndarray, np.ndarray]]:
    """Many independent assignment problems at once, solved in parallel threads.

    Same arguments per matrix as :func:`linear_sum_assignment`; returns one
    ``(row_ind, col_ind)`` per matrix, in order.

    Example::

        >>> import numpy as np
        >>> out = linear_sum_assignment_many([np.eye(2), np.ones((2, 3))])
        >>> [c.tolist() for _, c in out]
        [[1, 0], [0, 1]]
    """
    return _gradlab.linear_sum_assignment_many(
        list(cost_matrices), maximize, partial=partial, unmatched_cost=unmatched_cost
    )
