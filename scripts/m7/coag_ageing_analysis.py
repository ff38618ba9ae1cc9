#!/usr/bin/env python3
"""Where the box model's ageing of insoluble particles by coagulation departs from the Fortran M7
(issue 16, cause (A) in docs/results/m7-fidelity.md).

Runs `xtask m7-step` on the reference inputs (crates/aerosol/tests/data/m7-reference) in the
`coag` configuration (coagulation only, fidelity echam_ham) four times — with ageing, without
ageing, without the mode shift, and with every process off (for the start-of-step radii) — and
splits the insoluble
modes' number loss into coagulation loss L (ours, ageing off) and ageing A:
A_ours = loss(ours) − L, A_ref = loss(Fortran) − L. It prints the ratio A_ref / A_ours by the
insoluble number, by the nucleation-mode number, and by how much of our loss is ageing, and
tests candidate rules for the extra ageing (each printed with the spread of ref/candidate; a rule
that held would give a narrow spread around 1). Last, for cause (C), the NS number loss of the
reference over ours in cells where a single partner dominates it.

Usage: python3 scripts/m7/coag_ageing_analysis.py [--xtask PATH]   (needs numpy; default
PATH: target/release/xtask, built by `cargo build --release -p xtask`)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "crates", "aerosol", "tests", "data", "m7-reference")
DT = 720.0
SIGMA = np.array([1.59, 1.59, 1.59, 2.0, 1.59, 1.59, 2.0])
# Reference output layout: H2SO4, 18 masses, 7 numbers.
SO4_NS, N0_COL = 1, 19
MODES = ["NS", "KS", "AS", "CS", "KI", "AI", "CI"]


def step(xtask, tmp, name, **procs):
    p = {"water_uptake": True, "condensation": False, "nucleation": False, "activation_nucleation": False,
         "coagulation": True, "ageing": True, "mode_shift": True}
    p.update(procs)
    cfg = os.path.join(tmp, f"{name}.json")
    with open(cfg, "w") as f:
        json.dump({"processes": p, "fidelity": "echam_ham"}, f)
    out = os.path.join(tmp, f"{name}.npy")
    subprocess.run([xtask, "m7-step", "--input", os.path.join(DATA, "inputs.npy"), "--output", out, "--config", cfg,
                    "--overwrite"], check=True, stdout=subprocess.DEVNULL)
    o = np.load(out)
    cols = [c["name"] for c in json.load(open(out[:-4] + ".columns.json"))]
    return o, cols


def pct(v):
    return " ".join(f"{x:8.3g}" for x in np.percentile(v, [10, 25, 50, 75, 90]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--xtask", default=os.path.join(ROOT, "target", "release", "xtask"))
    a = ap.parse_args()
    if not os.path.isfile(a.xtask):
        sys.exit(f"--xtask {a.xtask}: not found; build it with `cargo build --release -p xtask`")
    x = np.load(os.path.join(DATA, "inputs.npy"))
    ref = np.load(os.path.join(DATA, "out_coag.npy"))
    with tempfile.TemporaryDirectory() as tmp:
        ours, cols = step(a.xtask, tmp, "coag")
        noage, _ = step(a.xtask, tmp, "noage", ageing=False)
        null, _ = step(a.xtask, tmp, "null", coagulation=False, ageing=False, mode_shift=False)
        noshift, _ = step(a.xtask, tmp, "noshift", mode_shift=False)
    c = {n: i for i, n in enumerate(cols)}
    p, t = x[:, 0], x[:, 1]
    n0 = x[:, 26:33]
    rw = np.stack([null[:, c[f"r_wet_{m.lower()}"]] for m in MODES], 1)
    rho = np.stack([null[:, c[f"density_{m.lower()}"]] for m in MODES], 1)

    # Fuchs kernel as the box model evaluates it under echam_ham: a numpy copy of
    # process/coagulation.rs (`kernel`, `Air::with_fidelity`) for the per-pair shares, which no
    # command exports; keep it in step with that file.
    kb = 1.380649e-16
    mu = 1.458e-5 * t * np.sqrt(t) / (t + 110.4)
    lam = 6.6e-6 * (101325.0 / p) * (t / 293.15)

    def kin(i):
        r = rw[:, i]
        kn = lam / r
        d = kb * t * (1 + kn * (1.257 + 0.4 * np.exp(-1.1 / kn))) / (6 * np.pi * mu * r)
        c2 = 8 * kb * t / (np.pi * rho[:, i] * 4 / 3 * np.pi * r ** 3)
        l = 8 * d / (np.pi * np.sqrt(c2))
        g = ((2 * r + l) ** 3 - (4 * r * r + l * l) ** 1.5) / (6 * r * l) - 2 * r
        return r, d, c2, g

    def kern(i, j):
        r1, d1, c1, g1 = kin(i)
        r2, d2, c2, g2 = kin(j)
        R, D = r1 + r2, d1 + d2
        return 4 * np.pi * D * R / (R / (R + np.hypot(g1, g2)) + 4 * D / (np.sqrt(c1 + c2) * R))

    print("ratio A_ref / A_ours of the aged number (percentiles 10 25 50 75 90)")
    for m in (4, 5, 6):
        col = N0_COL + m
        loss_ref = x[:, 26 + m] - ref[:, col]
        L = x[:, 26 + m] - noage[:, c[f"n_{MODES[m].lower()}"]]
        a_ours = noage[:, c[f"n_{MODES[m].lower()}"]] - ours[:, c[f"n_{MODES[m].lower()}"]]
        a_ref = loss_ref - L
        ok = (a_ours > 1e-4 * n0[:, m]) & (a_ref < 0.8 * n0[:, m])
        print(f"{MODES[m]}: all {ok.sum()} cells: {pct(a_ref[ok] / a_ours[ok])}")
        for lo, hi in [(0, 1), (1, 10), (10, 100), (100, 1e9)]:
            s = ok & (n0[:, m] >= lo) & (n0[:, m] < hi)
            if s.sum() > 5:
                print(f"  N_{MODES[m]} in [{lo:g}, {hi:g}) cm-3, {s.sum():4d} cells: {pct(a_ref[s] / a_ours[s])}")
        if m != 4:
            continue
        for lo, hi in [(0, 1e3), (1e3, 1e4), (1e4, 1e5), (1e5, 1e9)]:
            s = ok & (n0[:, 0] >= lo) & (n0[:, 0] < hi)
            if s.sum() > 5:
                print(f"  N_NS in [{lo:g}, {hi:g}) cm-3, {s.sum():4d} cells: {pct(a_ref[s] / a_ours[s])}")
        for lo, hi in [(0, 0.3), (0.3, 3), (3, 1e9)]:
            s = ok & (a_ours >= lo * L) & (a_ours < hi * L)
            if s.sum() > 5:
                print(f"  A_ours/L in [{lo:g}, {hi:g}), {s.sum():4d} cells: {pct(a_ref[s] / a_ours[s])}")
        # Candidate rules for the KI ageing, as aged number per cell.
        need = 4 * np.pi * (rw[:, 4] * np.exp(np.log(SIGMA[4]) ** 2)) ** 2 / 2.39e-15
        kni = kern(0, 4)
        cand = {
            "sulfate NS->KI / monolayer (ours)": kni * n0[:, 4] * x[:, 8] * DT / need,
            "+ sulfate NS->KS / monolayer": (kni * n0[:, 4] + kern(0, 1) * n0[:, 1]) * x[:, 8] * DT / need,
            "first NS collision (1 - exp(-K N_NS dt)) N_KI": (1 - np.exp(-kni * n0[:, 0] * DT)) * n0[:, 4],
            "KS-KI collisions": kern(1, 4) * n0[:, 1] * n0[:, 4] * DT,
        }
        s = ok & (a_ref > 0)
        print("  candidate rules for KI (ref / candidate):")
        for k, v in cand.items():
            print(f"    {k:48s} {pct(a_ref[s] / v[s])}")
        ki_fraction_regression(x, n0, a_ref, a_ours, kni, need, rw, ok)
        L_ki = L  # our KI coagulation loss with ageing off (m = 4 in the loop above)
        ki_split(x, ref, n0, a_ref, a_ours, L_ki, kern, need, rw, noshift[:, c["n_ns"]] - ours[:, c["n_ns"]])
        # Which kernel input could make every KI pair 3 % faster? Median kernel change per
        # dominant partner when one input is perturbed (the closure reads these names at call time).
        sel = (a_ours < 0.01 * L_ki) & (L_ki < 0.05 * n0[:, 4]) & (L_ki > 0)
        base = {m: kern(m, 4) for m in range(4)}
        tot = sum(base[m] * n0[:, m] for m in range(4))

        def kernel_change(label):
            out = []
            for m in range(4):
                s = sel & (base[m] * n0[:, m] > 0.8 * tot)
                if s.sum() >= 5:
                    out.append(f"{MODES[m]} {np.median(kern(m, 4)[s] / base[m][s]) - 1:+.3f}")
            print(f"    {label:14s} KI kernel change with partner: " + ", ".join(out))

        saved = (rw[:, 4].copy(), rho[:, 4].copy(), lam, mu)
        rw[:, 4] = saved[0] * 1.03
        kernel_change("r_KI +3 %")
        rw[:, 4] = saved[0]
        rho[:, 4] = saved[1] * 0.9
        kernel_change("rho_KI -10 %")
        rho[:, 4] = saved[1]
        lam = saved[2] * 1.1
        kernel_change("lambda +10 %")
        lam = saved[2]
        mu = saved[3] * 0.97
        kernel_change("mu -3 %")
        mu = saved[3]
        # collisions per cm³ over the step (½ for the mode with itself)
        ins = {"KI-AI": kern(4, 5) * n0[:, 5], "KI-CI": kern(4, 6) * n0[:, 6], "KI-KI": 0.5 * kern(4, 4) * n0[:, 4]}
        for k, v in ins.items():
            t = sel & (np.nan_to_num(v) > 0)
            print(f"    E / ({k} collisions), {t.sum()} cells: {pct((a_ref - a_ours)[t] / (v[t] * n0[t, 4] * DT))}")
    ns_loss_by_partner(x, ref, ours, noshift, c, kern, n0)


def ki_fraction_regression(x, n0, a_ref, a_ours, kni, need, rw, ok):
    """The reference's aged KI fraction A_ref / N_KI as a power law of the cell's quantities
    (least squares on logs, cells with 1e-4 < A/N_KI < 0.5 for both models), and the cells
    where fewer NS particles reach a KI particle than its coating needs."""
    s = ok & (a_ref > 1e-4 * n0[:, 4]) & (a_ref < 0.5 * n0[:, 4])
    feats = {"K(NS,KI)": kni, "N_NS": n0[:, 0], "N_KI": n0[:, 4], "SO4 per NS particle": x[:, 8] / n0[:, 0],
             "r_KI": rw[:, 4], "need (monolayer)": need, "T": x[:, 1], "p": x[:, 0],
             # the other soluble partners and the NS particle's size (+1e-6: some cells have none)
             "N_KS": n0[:, 1] + 1e-6, "N_AS": n0[:, 2] + 1e-6, "N_CS": n0[:, 3] + 1e-6,
             "SO4_KS": x[:, 9] + 1e-6, "r_NS": rw[:, 0], "r_KS": rw[:, 1], "RH": x[:, 2]}
    X = np.column_stack([np.ones(s.sum())] + [np.log(v[s]) for v in feats.values()])
    y = np.log(a_ref[s] / n0[s, 4])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r2 = 1 - np.var(y - X @ coef) / np.var(y)
    print(f"  reference aged KI fraction ~ power law ({s.sum()} cells, R² {r2:.2f}); exponents:")
    print("    " + ", ".join(f"{k} {c:+.2f}" for k, c in zip(feats, coef[1:])))
    # Sulfate that NS coagulation can bring per KI particle over the step, against the coating
    # it needs: where it is far below 1, no NS-borne rule can age much of KI.
    supply = kni * n0[:, 0] * DT * (x[:, 8] / n0[:, 0]) / need
    frac = a_ref / n0[:, 4]
    t = ok & (supply < 0.01) & (frac > 0.1)
    print(f"  cells where NS coagulation brings < 1 % of a monolayer per KI particle yet the reference "
          f"ages > 10 % of KI: {t.sum()} (ours ages {pct(a_ours[t] / n0[t, 4])} of KI there)")


def ki_split(x, ref, n0, a_ref, a_ours, L, kern, need, rw, ns_shifted):
    """Split the reference's extra KI loss E = A_ref − A_ours into cells where it is small against
    our coagulation loss L (a coagulation-rate difference) and cells where it exceeds L (ageing by
    a rule we lack); and in cells where our ageing is < 1 % of L and L < 5 % of N_KI, the
    reference's KI loss over ours by the partner that takes > 80 % of it."""
    e = a_ref - a_ours
    has = (L > 0) & (e > 1e-5 * n0[:, 4])
    print(f"  extra KI loss E: {has.sum()} cells with E > 1e-5 N_KI; E < 0.1 L in "
          f"{(has & (e < 0.1 * L)).sum()}, E > L in {(has & (e > L)).sum()}")
    big = has & (e > L) & (a_ref < 0.9 * n0[:, 4])
    supply = kern(0, 4) * n0[:, 4] * DT * x[:, 8]  # NS sulfate reaching KI, molecules cm-3
    print(f"  where E > L and < 90 % of KI is aged ({big.sum()} cells): NS sulfate reaching KI per KI particle the "
          f"reference ages {pct(supply[big] / a_ref[big])} molecules; monolayer need {pct(need[big])}")
    # the extra ageing as a power law, in cells where our NS mode does not shift to KS
    t = big & (a_ref < 0.5 * n0[:, 4]) & (ns_shifted <= 0) & (n0[:, 0] > 0)
    feats = {"N_NS": n0[:, 0], "r_NS": rw[:, 0], "N_KI": n0[:, 4], "r_KI": rw[:, 4]}
    X = np.column_stack([np.ones(t.sum())] + [np.log(v[t]) for v in feats.values()])
    y = np.log(e[t])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    r2 = 1 - np.var(y - X @ coef) / np.var(y)
    print(f"  E where E > L, < 50 % aged and our NS does not shift ({t.sum()} cells; "
          f"{(big & (ns_shifted > 0)).sum()} of the {big.sum()} shift): power law R² {r2:.2f}, exponents "
          + ", ".join(f"{k} {v:+.2f}" for k, v in zip(feats, coef[1:])))
    loss_ref = n0[:, 4] - ref[:, N0_COL + 4]
    ok = (a_ours < 0.01 * L) & (L < 0.05 * n0[:, 4]) & (L > 0)
    print(f"  KI loss, reference / ours, where ageing is negligible ({ok.sum()} cells): {pct(loss_ref[ok] / L[ok])}")
    parts = {MODES[m]: kern(m, 4) * n0[:, m] for m in range(4)}
    total = sum(parts.values())
    for k, v in parts.items():
        s = ok & (v > 0.8 * total)
        if s.sum() >= 5:
            print(f"    {k:3s} takes > 80 % of it, {s.sum():3d} cells: {pct(loss_ref[s] / L[s])}")
    # the same ratio (median) by the cell's conditions
    for name, v, edges in [("T [K]", x[:, 1], [230, 250, 270, 290, 310]),
                           ("p [kPa]", x[:, 0] / 1e3, [10, 40, 70, 110]),
                           ("RH", x[:, 2], [0, 0.45, 0.7, 1.0]),
                           ("N_KI [cm-3]", n0[:, 4], [0, 1, 10, 100, 1e5])]:
        cells = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            s = ok & (v >= lo) & (v < hi)
            if s.sum() >= 5:
                cells.append(f"[{lo:g}, {hi:g}) {np.median(loss_ref[s] / L[s]):.3f} ({s.sum()})")
        print(f"    by {name}: " + ", ".join(cells))


def ns_loss_by_partner(x, ref, ours, noshift, c, kern, n0):
    """Cause (C): the NS number loss, reference / ours, in cells where one partner takes > 80 %
    of it (short-step shares from the kernel above; cells where our NS shift does not act and
    the loss is < 5 % of N_NS)."""
    col = N0_COL
    n_ns = n0[:, 0]
    parts = {"intra": 0.5 * kern(0, 0) * n_ns * n_ns * DT}
    for m in range(1, 7):
        parts[MODES[m]] = kern(0, m) * n0[:, m] * n_ns * DT
    total = sum(parts.values())
    d_ref = x[:, 26] - ref[:, col]
    d_ours = x[:, 26] - ours[:, c["n_ns"]]
    d_noshift = x[:, 26] - noshift[:, c["n_ns"]]
    ok = (np.abs(d_noshift - d_ours) <= 1e-9 * x[:, 26] + 1e-12) & (total < 0.05 * n_ns) & (d_ref > 0) & (d_ours > 0)
    print(f"\nNS number loss, reference / ours (no NS shift, loss < 5 %: {ok.sum()} cells): {pct(d_ref[ok] / d_ours[ok])}")
    for k, v in parts.items():
        s = ok & (v > 0.8 * total)
        if s.sum() >= 5:
            print(f"  {k:5s} takes > 80 % of it, {s.sum():3d} cells: {pct(d_ref[s] / d_ours[s])}")


if __name__ == "__main__":
    main()
