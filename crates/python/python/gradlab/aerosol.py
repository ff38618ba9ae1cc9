"""The M7 aerosol microphysics box model (7 lognormal modes) on numpy arrays.

Input rows are in the ``m7-step`` layout (M7 interface order, 33 columns: pressure,
temperature, RH, ionisation, H2SO4 production, H2SO4 gas, cloud cover, forest fraction,
18 masses, 7 numbers; an optional 34th boundary-layer flag). ``M7.input_columns`` names them.

Example::

    >>> import numpy as np
    >>> from gradlab.aerosol import M7
    >>> m7 = M7({"dt": 720.0})
    >>> cells = np.zeros((1, 33))
    >>> cells[0, :8] = [1.0e5, 285.0, 0.6, 5.0, 1.0e3, 1.0e7, 0.0, 0.0]
    >>> out = m7.step(cells)
    >>> out.shape, len(m7.columns)
    ((1, 58), 58)

A trained emulator (the folder ``cargo xtask experiment m7-emulator`` saves) predicts the
step's tendencies from the dataset's 32 X columns (``Emulator.input_columns``)::

    em = Emulator.load("runs/m7-emulator/<run>/emulator")
    dy = em.predict(x)          # [N, 28] float32 tendencies and water
    y = em.step(x)              # [N, 28] float64 states after the step, then water
"""

from __future__ import annotations

from ._gradlab import M7, Emulator, m7_step_file, sample_cells

__all__ = ["M7", "Emulator", "m7_step_file", "sample_cells"]
