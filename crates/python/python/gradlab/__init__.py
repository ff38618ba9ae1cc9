"""gradlab for Python: four research toolkits, numpy in and out.

Submodules:

- ``gradlab.lap`` -- ``linear_sum_assignment`` (scipy's signature) on a sparse
  shortest-augmenting-path solver; ``inf`` marks forbidden pairs.
- ``gradlab.aerosol`` -- the M7 aerosol microphysics box model on ``[N, 33]`` arrays.
- ``gradlab.track`` -- the Bergen proton-CT detector simulator; frames as dicts of arrays.
- ``gradlab.bayesopt`` -- an ask/tell ``Study`` and a ``gp_minimize``-shaped ``minimize``.
- ``gradlab.landscape`` -- loss surfaces and Hessian eigenvalues of Python callables.

Computation runs in Rust with the GIL released; bad input raises ``ValueError`` /
``TypeError`` / ``FileNotFoundError`` naming the field and what is allowed.
"""

from . import aerosol, bayesopt, landscape, lap, track

__all__ = ["aerosol", "bayesopt", "landscape", "lap", "track"]
__version__ = "0.1.0"
