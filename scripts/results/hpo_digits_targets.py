#!/usr/bin/env python3
"""Tables of a `bo-hpo-digits` run beyond its own report: iterations to several validation
accuracy targets, and the best validation accuracy after k evaluations, per method (mean ± std
over the replicates; a replicate that never reaches a target counts as not reached).

usage: python3 scripts/results/hpo_digits_targets.py RUN_DIR [--targets 0.97,0.98,0.985,0.99]
       [--at 13,25,50,100]
Reads RUN_DIR/stages/<method>-seed<s>.json (written by the experiment); prints Markdown.
"""

import argparse
import glob
import json
import os
import statistics as st
import sys


def mean_std(v):
    if not v:
        return "—"
    return f"{st.mean(v):.1f} ± {st.stdev(v):.1f}" if len(v) > 1 else f"{v[0]:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--targets", default="0.97,0.98,0.985,0.99")
    ap.add_argument("--at", default="13,25,50,100")
    a = ap.parse_args()
    files = sorted(glob.glob(os.path.join(a.run, "stages", "*-seed*.json")))
    if not files:
        sys.exit(f"{a.run}: no stages/*-seed*.json (not a bo-hpo-digits run folder?)")
    try:
        targets = [float(t) for t in a.targets.split(",")]
        at = [int(k) for k in a.at.split(",")]
    except ValueError:
        sys.exit(f"--targets {a.targets!r} / --at {a.at!r}: want comma-separated numbers, "
                 "accuracies in (0, 1] and whole evaluation counts >= 1 (e.g. 0.97,0.99 and 13,50)")
    if not all(0 < t <= 1 for t in targets) or not all(k >= 1 for k in at):
        sys.exit(f"--targets {a.targets!r} / --at {a.at!r}: accuracies must lie in (0, 1], counts be >= 1")
    runs = {}
    for f in files:
        d = json.load(open(f))
        runs.setdefault(d["method"], []).append(d)
    methods = list(runs)
    print("Iterations to a validation-accuracy target (mean ± std over the replicates that reach it; "
          "reached / replicates). An iteration is one ask (q evaluations for a batch method).\n")
    print("| method | " + " | ".join(f"≥ {t}" for t in targets) + " |")
    print("|---|" + "---|" * len(targets))
    for m in methods:
        cells = []
        for t in targets:
            its = []
            for d in runs[m]:
                hit = next((r["iteration"] for r in d["records"] if r["val_acc"] >= t), None)
                if hit is not None:
                    its.append(hit)
            cells.append(f"{mean_std(its)} ({len(its)}/{len(runs[m])})")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print("\nBest validation accuracy after k evaluations (mean ± std over the replicates, in %).\n")
    print("| method | " + " | ".join(f"k = {k}" for k in at) + " |")
    print("|---|" + "---|" * len(at))
    for m in methods:
        cells = []
        for k in at:
            best = [100 * max(r["val_acc"] for r in d["records"][:k]) for d in runs[m] if len(d["records"]) >= k]
            cells.append(f"{st.mean(best):.2f} ± {st.stdev(best):.2f}" if len(best) > 1 else "—")
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
