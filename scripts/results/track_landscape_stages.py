#!/usr/bin/env python3
"""The connectivity and instability tables of a `track-landscape` run from its finished pair
stages (`stages/<variant>-pair-seeds<a>-<b>.json`), while the run is still going: one row per
finished pair with the paper's columns (max Hamming loss and min edge TPR % along the straight
line and the trained Bézier curve, each with the BatchNorm statistics interpolated and, where the
run recomputes them, recomputed), then the barrier heights, then the min–max normalised
disagreement of edges and tracks and the per-module linear CKA, then the finished curvature
stages (`stages/<variant>-curvature-seed<s>.json`: top Hessian eigenvalues of the BCE loss, the
SLQ support, and the variant's own training loss and the track purity on the slice along the top-2
eigenvectors, ±0.5). The run's own `report.md`, written when
every stage has finished, has the same numbers plus the figures.

usage: scripts/results/track_landscape_stages.py runs/track-landscape/<run>
"""
import glob
import json
import os
import re
import sys
import urllib.parse


# crates/track/src/landscape_study/activations.rs, MODULES
MODULES = ["relational (R1 messages)", "aggregation (max)", "object (O)", "edge scores (R2)"]


def fmt(x, digits):
    return "—" if x is None else f"{x:.{digits}f}"


def main(run):
    files = sorted(glob.glob(os.path.join(run, "stages", "*-pair-seeds*.json")))
    if not files:
        sys.exit(f"no finished pair stage in {run}/stages")
    rows = []
    for f in files:
        name = urllib.parse.unquote(os.path.basename(f))
        m = re.match(r"(.*)-pair-seeds(\d+)-(\d+)\.json$", name)
        if not m:
            continue
        try:
            paths, inst = json.load(open(f))
        except (OSError, ValueError) as e:
            sys.exit(f"cannot read {f}: {e}")
        rows.append((m.group(1), int(m.group(2)), int(m.group(3)), paths, inst))
    order = {}
    for r in rows:
        order.setdefault(r[0], len(order))
    rows.sort(key=lambda r: (order[r[0]], r[1], r[2]))

    def prof(p):
        return (max(p["losses"]), p["barrier"]) if p else (None, None)

    print("| variant | seeds | linear max Hamming | linear min TPR % | Bézier max Hamming | Bézier min TPR % "
          "| linear, BN recomputed: max Hamming / min TPR % | Bézier, BN recomputed: max Hamming / min TPR % |")
    print("|---|---|---|---|---|---|---|---|")
    for v, a, b, p, _ in rows:
        lin = prof(p["linear_hamming"])[0]
        lin_tpr = 100 * min(p["linear_tpr"])
        bez = p["bezier"][0] if p["bezier"] else None
        bz = (max(bez[1]["losses"]), 100 * min(bez[2])) if bez else (None, None)
        lbn = (prof(p.get("linear_hamming_bn"))[0], 100 * min(p["linear_tpr_bn"]) if p.get("linear_tpr_bn") else None)
        bbn = p.get("bezier_bn") or []
        bb = (max(bbn[0][0]["losses"]), 100 * min(bbn[0][1])) if bbn else (None, None)
        obj = f" ({bez[0]})" if bez else ""
        print(f"| {v} | {a}–{b} | {fmt(lin, 4)} | {fmt(lin_tpr, 1)} | {fmt(bz[0], 4)}{obj} | {fmt(bz[1], 1)} "
              f"| {fmt(lbn[0], 4)} / {fmt(lbn[1], 1)} | {fmt(bb[0], 4)} / {fmt(bb[1], 1)} |")
    print("\nBarrier heights (max along the path − the larger end point), Hamming loss:\n")
    print("| variant | seeds | linear | Bézier | linear, BN recomputed | Bézier, BN recomputed |")
    print("|---|---|---|---|---|---|")
    for v, a, b, p, _ in rows:
        bez = p["bezier"][0][1]["barrier"] if p["bezier"] else None
        lbn = p["linear_hamming_bn"]["barrier"] if p.get("linear_hamming_bn") else None
        bbn = p["bezier_bn"][0][0]["barrier"] if p.get("bezier_bn") else None
        print(f"| {v} | {a}–{b} | {fmt(p['linear_hamming']['barrier'], 4)} | {fmt(bez, 4)} | {fmt(lbn, 4)} | {fmt(bbn, 4)} |")
    print("\nPrediction instability on the analysis frames (min–max normalised disagreement; linear CKA of each "
          "module's activations):\n")
    print("| variant | seeds | edges | tracks | " + " | ".join(f"CKA {m}" for m in MODULES) + " |")
    print("|---|---|---|---|" + "---|" * len(MODULES))
    for v, a, b, _, i in rows:
        cka = " | ".join(f"{c:.3f}" for c in i["cka"])
        print(f"| {v} | {a}–{b} | {i['edges']['min_max']:.4f} | {i['tracks']['min_max']:.4f} | {cka} |")


def curvature(run):
    files = sorted(glob.glob(os.path.join(run, "stages", "*-curvature-seed*.json")))
    if not files:
        return
    print("\nCurvature (finished curvature stages): eigenvalues of the Hessian of the BCE loss over the trainable "
          "parameters; slice of the variant's own training loss (PAT: Hamming, PTT: BCE) and of the track purity "
          "along the top-2 eigenvectors:\n")
    print("| variant | seed | top eigenvalues | Lanczos converged | HVPs | SLQ support | own loss at the centre / max "
          "on the slice | purity % at the centre / min on the slice | Hessian products |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in files:
        try:
            c = json.load(open(f))
        except (OSError, ValueError) as e:
            sys.exit(f"cannot read {f}: {e}")
        top = ", ".join(f"{v:.3g}" for v in c["top"])
        lo, hi = c["slq_range"]
        how = c.get("hvp", "").split(": exact")[0]
        print(f"| {c['variant']} | {c['seed']} | {top} | {c['converged']} | {c['hvps']} | [{lo:.3g}, {hi:.3g}] "
              f"| {c['loss_centre']:.4f} / {c['loss_max_on_slice']:.4f} "
              f"| {100 * c['purity_centre']:.1f} / {100 * c['purity_min_on_slice']:.1f} | {how} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
    curvature(sys.argv[1])
