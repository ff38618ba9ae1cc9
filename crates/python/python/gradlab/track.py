"""Proton CT tracking: the Bergen digital tracking calorimeter simulator.

Example::

    >>> from gradlab.track import Simulator
    >>> sim = Simulator.bergen(thickness_mm=150.0, primaries=20)
    >>> f = sim.frame(seed=1, index=0)
    >>> f["hits"].shape[1], f["hits"].dtype.name, int(f["primaries"])
    (3, 'float32', 20)
"""

from __future__ import annotations

from ._gradlab import Simulator, generate_dataset, load_split

__all__ = ["Simulator", "generate_dataset", "load_split"]
