#!/usr/bin/env python3
"""The ablation table of docs/results/bayesopt.md from `bo_peer` JSON lines: per configuration
(the `impl` label) and function, the best value's mean ± std over seeds and the paired t
statistic of (configuration − baseline) over the seeds both ran (negative: better; |t| > 2.09
is p < 0.05 two-sided at 20 seeds), then the mean overhead per evaluation and its split into
the refits and the acquisition (ms).

usage: scripts/results/bo_ablation_table.py LINES.jsonl[,MORE.jsonl...] BASELINE_LABEL [LABEL ...]
(without labels: every label in the files, in order of appearance; several files are pooled; a
(label, function, seed) that occurs twice must have the same result, and the later line is used)
"""
import json
import math
import statistics
import sys

FUNCTIONS = ["branin", "hartmann6", "levy5", "ackley5"]


def main(path, baseline, labels):
    runs = {}
    order = []
    lines = []
    for p in path.split(","):
        try:
            with open(p) as f:
                lines += [(p, json.loads(line)) for line in f if line.strip()]
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"cannot read {p}: {e}")
    for p, r in lines:
        if r["impl"] not in runs:
            order.append(r["impl"])
        key = (r["function"], r["seed"])
        old = runs.get(r["impl"], {}).get(key)
        # a rerun with the same result (runs are deterministic) replaces the earlier line, as
        # before; a different result for the same configuration and seed is refused
        if old is not None and old["best"] != r["best"]:
            sys.exit(f"{r['impl']} {r['function']} seed {r['seed']} occurs twice with different results "
                     f"(the second in {p})")
        runs.setdefault(r["impl"], {})[key] = r
    labels = labels or order
    for label in [baseline] + labels:
        if label not in runs:
            sys.exit(f"no runs labelled {label!r} in {path}; labels there: {', '.join(order)}")
    base = runs[baseline]
    print(f"| config | {' | '.join(FUNCTIONS)} | overhead ms / eval (refit + acquisition) |")
    print("|---|" + "---|" * (len(FUNCTIONS) + 1))
    for label in labels:
        cells = []
        for f in FUNCTIONS:
            keys = sorted(k for k in runs[label] if k[0] == f)
            if not keys:
                cells.append("—")
                continue
            vals = [runs[label][k]["best"] for k in keys]
            cell = f"{statistics.mean(vals):.4g} ± {statistics.stdev(vals) if len(vals) > 1 else 0:.2g}"
            paired = [k for k in keys if k in base]
            if label != baseline and len(paired) > 1:
                d = [runs[label][k]["best"] - base[k]["best"] for k in paired]
                sd = statistics.stdev(d)
                t = statistics.mean(d) / (sd / math.sqrt(len(d))) if sd > 0 else 0.0
                cell += f" (t = {t:+.1f})"
            cells.append(cell)
        rs = list(runs[label].values())
        ovh = statistics.mean(r["overhead_ms_mean"] for r in rs)
        fit = statistics.mean(r["fit_ms_total"] for r in rs) / statistics.mean(r["budget"] for r in rs)
        acq = statistics.mean(r["acquisition_ms_total"] for r in rs) / statistics.mean(r["budget"] for r in rs)
        print(f"| `{label}` | {' | '.join(cells)} | {ovh:.1f} ({fit:.1f} + {acq:.1f}) |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
