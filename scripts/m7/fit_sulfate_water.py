#!/usr/bin/env python3
"""Fit M7's sulfate water uptake and solution density (ECHAM-HAM, nwater = 0) to the Fortran
reference cells.

The Fortran M7 computes the water of its sulfate modes (NS, KS) and the density of that
solution from fits in temperature, relative humidity and the number of H2SO4 molecules per
particle whose coefficients are not in the published papers (the Vehkamäki et al. 2002 density
alone misses the reference's wet volumes by 0.3 % median, up to 2.5 %, with a trend in particle
size). This script recovers both from the reference data alone
(crates/aerosol/tests/data/m7-reference). For every cell, configuration and mode NS/KS it takes
the output state's H2SO4 molecules per particle n = SO4/N, the Fortran's water and wet
count-median radius, and fits

    y   = (H2SO4 molecules) / (water molecules)                       (NS and KS)
    rho = (H2SO4 + water mass) / (wet volume − BC/OC volume at 2 g cm⁻³)   (NS and KS)

each as a polynomial P(ln T, ln RH, ln n) of total degree D, every input clipped to the range
the reference covers (T in [240, 305] K, RH in [0.2, 0.9], n in [2, 5e5]; the Fortran itself
clips T >= 240 K and RH to [0.05, 0.9]) and mapped linearly onto [-1, 1].

It also recovers the binary Na2SO4 molality the Fortran uses in its ZSR water of the mixed modes
AS and CS (RH >= 0.45): with the H2SO4 and NaCl terms of Jacobson et al. (1996), Table 2 (the
reference matches them exactly), the rest of the AS/CS water per Na2SO4 (formed from sea salt and
sulfate) gives sqrt(m_Na2SO4) at each cell's RH, fitted by a polynomial of degree 7 in a_w = RH
(Jacobson's form).

Honesty of the fit: coefficients are fitted on the even-numbered reference cells only; D is
chosen by 5-fold cross-validation within them (99th percentile of the error); the odd-numbered
cells are held out, and `tests/fidelity.rs` asserts the box model on them. The script prints
the held-out errors and writes `crates/aerosol/src/process/sulfate_water_fit.rs`.

Usage: python3 scripts/m7/fit_sulfate_water.py   (needs numpy, e.g. in any venv with numpy)
"""
import itertools
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = ROOT / "crates/aerosol/tests/data/m7-reference"
OUT = ROOT / "crates/aerosol/src/process/sulfate_water_fit.rs"
NA = 6.02214076e23
M_WATER = 18.015  # g/mol, as the crate's constants
M_H2SO4 = 98.0734  # g/mol, as the crate's constants (and M7)
RHO_BC_OC = 2.0  # g/cm3, as the crate's constants (and the reference's description)
LN_SIGMA_NS_KS = np.log(1.59)
T_RANGE = (240.0, 305.0)
RH_RANGE = (0.2, 0.9)
N_RANGE = (2.0, 5.0e5)
DEGREES = range(3, 10)  # searched; 9 (220 terms) is the cap
M_NACL = 58.443  # g/mol, as the crate's constants
NACL_CRH = 0.45  # M7's crystallisation RH of sea salt
# Jacobson et al. (1996), Table 2: sqrt(molality) = sum Y_k a_w^k (as crates/aerosol process/water.rs).
Y_H2SO4 = [5.611895, -1.387446e1, 1.750682e1, 7.138146e1, -3.109173e2, 4.662288e2, -3.128612e2, 7.76097e1]
Y_NACL = [-1.918004e2, 2.001540e3, -8.557205e3, 1.987670e4, -2.717192e4, 2.187103e4, -9.591577e3, 1.763672e3]


def exponents(degree):
    return [p for p in itertools.product(range(degree + 1), repeat=3) if sum(p) <= degree]


def scaled(v, r):
    """Maps v in [r0, r1] onto [-1, 1] (well-conditioned monomials)."""
    return (2.0 * v - r[0] - r[1]) / (r[1] - r[0])


def features(t, rh, n, degree):
    x = [scaled(np.log(np.clip(v, *r)), np.log(r)) for v, r in
         [(t, T_RANGE), (rh, RH_RANGE), (n, N_RANGE)]]
    return np.array([x[0] ** i * x[1] ** j * x[2] ** k for i, j, k in exponents(degree)]).T


def samples(cells):
    """(T, RH, n, y, rho) for every distinct NS/KS output state of `cells`."""
    x = np.load(DATA / "inputs.npy")
    rows = []
    for cfg in ["all", "nucl", "cond", "coag"]:
        out = np.load(DATA / f"out_{cfg}.npy")
        # (SO4, N, wet radius, water, BC, OC) columns of NS and KS; NS holds no BC/OC.
        for so4_c, n_c, r_c, w_c, bc_c, oc_c in [(1, 19, 26, 44, None, None), (2, 20, 27, 45, 5, 9)]:
            for i in cells:
                so4, num, r, w = out[i, so4_c], out[i, n_c], out[i, r_c], out[i, w_c]
                if so4 > 0 and num > 1e-10 and w > 0:
                    water_g = w * 1e-3  # kg m-3 -> g cm-3
                    so4_g = so4 / NA * M_H2SO4
                    wet_vol = num * 4.0 / 3.0 * np.pi * r**3 * np.exp(4.5 * LN_SIGMA_NS_KS**2)
                    insoluble = 0.0 if bc_c is None else (out[i, bc_c] + out[i, oc_c]) * 1e-12 / RHO_BC_OC
                    rows.append((x[i, 1], x[i, 2], so4 / num, so4 / (water_g / M_WATER * NA),
                                 (so4_g + water_g) / (wet_vol - insoluble)))
    a = np.unique(np.array(rows), axis=0)  # identical states appear in several configurations
    return a.T


def molality(y, aw):
    return np.polyval(y[::-1], aw) ** 2


def na2so4_samples(cells):
    """(a_w, water mol per mol Na2SO4, Na2SO4 share of the water, cell) of the AS/CS modes."""
    x = np.load(DATA / "inputs.npy")
    rows = []
    for cfg in ["all", "nucl", "cond", "coag"]:
        out = np.load(DATA / f"out_{cfg}.npy")
        for so4_c, ss_c, w_c in [(3, 13, 46), (4, 14, 47)]:  # AS, CS
            for i in cells:
                rh, w = x[i, 2], out[i, w_c]
                if rh < NACL_CRH or w <= 0:
                    continue
                so4 = out[i, so4_c] / NA  # mol cm-3
                nacl = out[i, ss_c] * 1e-12 / M_NACL
                na2 = min(0.5 * nacl, so4)
                h2so4, cl = so4 - na2, nacl - 2.0 * na2
                aw = min(rh, 0.9)
                water = w * 1e-3 / M_WATER  # mol cm-3
                rest = water - (h2so4 / molality(Y_H2SO4, aw) + cl / molality(Y_NACL, aw)) / (M_WATER * 1e-3)
                if na2 > 0:
                    rows.append((aw, rest / na2, rest / water, i))
    return np.array(rows).T


def fit_na2so4():
    n_cells = np.load(DATA / "inputs.npy").shape[0]
    aw, per, share, cell = na2so4_samples(range(n_cells))
    # Cells where Na2SO4 holds at least a fifth of the water determine its molality well.
    train = (share > 0.2) & (cell % 2 == 0)
    sqrt_m = np.sqrt(1.0 / (per[train] * M_WATER * 1e-3))
    coef = np.polynomial.polynomial.polyfit(aw[train], sqrt_m, 7)
    held = (cell % 2 == 1) & (share > 0.0)
    m = molality(list(coef), aw[held])
    water_from_fit = 1.0 / (m * M_WATER * 1e-3)
    # error in the mode's total water: the Na2SO4 part is `share` of it
    e = np.abs(share[held] * (water_from_fit / per[held] - 1.0))
    summary = (f"held out (odd cells, {held.sum()} AS/CS states): median |rel. err| of the mode water "
               f"{np.median(e):.2e}, max {e.max():.2e}")
    print(f"Na2SO4 molality: {summary}")
    return coef, summary


def fit(name, t, rh, n, target, held_out):
    rng = np.random.default_rng(0)
    folds = rng.integers(0, 5, len(target))
    best = None
    for degree in DEGREES:
        errs = []
        for f in range(5):
            tr, va = folds != f, folds == f
            coef, *_ = np.linalg.lstsq(features(t[tr], rh[tr], n[tr], degree), target[tr], rcond=None)
            errs.append(np.abs(target[va] / (features(t[va], rh[va], n[va], degree) @ coef) - 1.0))
        e = np.concatenate(errs)
        print(f"{name}: degree {degree}: {len(exponents(degree))} terms, CV median |rel. err| "
              f"{np.median(e):.2e}, 99th pct {np.percentile(e, 99):.2e}, max {e.max():.2e}")
        if best is None or np.percentile(e, 99) < best[1]:
            best = (degree, np.percentile(e, 99))
    degree = best[0]
    coef, *_ = np.linalg.lstsq(features(t, rh, n, degree), target, rcond=None)
    ht, hrh, hn, hy = held_out
    e = np.abs(hy / (features(ht, hrh, hn, degree) @ coef) - 1.0)
    summary = (f"degree {degree}; held out (odd cells, {len(hy)} states): median |rel. err| "
               f"{np.median(e):.2e}, 99th percentile {np.percentile(e, 99):.2e}, max {e.max():.2e}")
    print(f"{name}: chosen {summary}")
    # Over the whole clipped box the fit must stay positive.
    g = np.meshgrid(np.linspace(*T_RANGE, 27), np.linspace(*RH_RANGE, 29),
                    np.exp(np.linspace(np.log(N_RANGE[0]), np.log(N_RANGE[1]), 31)), indexing="ij")
    yy = (features(g[0].ravel(), g[1].ravel(), g[2].ravel(), degree) @ coef).reshape(g[0].shape)
    if yy.min() <= 0:
        sys.exit(f"{name}: the fit is not positive over the clipped box (min {yy.min():.3g})")
    return degree, coef, summary, yy


def table(const, degree, coef):
    lines = [f"#[rustfmt::skip]", f"pub(crate) const {const}: [(u8, u8, u8, f64); {len(coef)}] = ["]
    lines += [f"    ({i}, {j}, {k}, {float(c)!r})," for (i, j, k), c in zip(exponents(degree), coef)]
    return lines + ["];", ""]


def main():
    n_cells = np.load(DATA / "inputs.npy").shape[0]
    t, rh, n, y, rho = samples(np.arange(0, n_cells, 2))
    ht, hrh, hn, hy, hrho = samples(np.arange(1, n_cells, 2))
    wd, wc, ws, yy = fit("water", t, rh, n, y, (ht, hrh, hn, hy))
    falling = (np.diff(1.0 / yy, axis=1) < 0).mean()
    print(f"water: over the box y in [{yy.min():.3g}, {yy.max():.3g}]; water falls with RH at "
          f"{falling * 100:.2f} % of grid steps")
    if falling > 0:
        sys.exit("water: the fit is not monotone in RH over the clipped box")
    dd, dc, ds, rr = fit("density", t, rh, n, rho, (ht, hrh, hn, hrho))
    print(f"density: over the box rho in [{rr.min():.3g}, {rr.max():.3g}] g/cm3")
    nc, ns = fit_na2so4()
    lines = [
        "//! GENERATED by `scripts/m7/fit_sulfate_water.py` from the M7 reference cells — do not edit.",
        "//!",
        "//! M7's sulfate-mode (NS, KS) water uptake and solution density as ECHAM-HAM computes them,",
        "//! each a polynomial in ln T, ln RH and ln n (n: H2SO4 molecules per particle), every input",
        "//! clipped to its range below and mapped linearly onto [-1, 1]. Fitted on the even-numbered",
        "//! reference cells; the odd-numbered ones are held out:",
        f"//! * water (H2SO4 molecules per water molecule): {ws}",
        f"//! * solution density \\[g cm⁻³\\]: {ds}",
        "//!",
        "//! And the binary Na2SO4 molality of the mixed modes' ZSR water, √m = Σₖ Yₖ a_wᵏ (Jacobson's form),",
        f"//! recovered from the AS/CS water at RH ≥ 0.45: {ns}",
        "",
        f"pub(crate) const T_RANGE: (f64, f64) = ({T_RANGE[0]}, {T_RANGE[1]});",
        f"pub(crate) const RH_RANGE: (f64, f64) = ({RH_RANGE[0]}, {RH_RANGE[1]});",
        f"pub(crate) const N_RANGE: (f64, f64) = ({N_RANGE[0]}, {N_RANGE[1]});",
        f"pub(crate) const MAX_DEGREE: usize = {max(wd, dd)};",
        "",
        "/// √(molality \\[mol kg⁻¹\\]) of binary Na2SO4 solutions = Σₖ Yₖ a_wᵏ.",
        f"pub(crate) const Y_NA2SO4: [f64; 8] = [{', '.join(repr(float(c)) for c in nc)}];",
        "",
        "/// H2SO4 molecules per water molecule: (exponent of T', of RH', of n', coefficient).",
        *table("WATER_TERMS", wd, wc),
        "/// Density of the H2SO4–water solution \\[g cm⁻³\\]: (exponent of T', of RH', of n', coefficient).",
        *table("DENSITY_TERMS", dd, dc),
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
