#!/usr/bin/env python3
"""The paper-style table of a `track-compare` run (docs/results/tracking.md): purity / efficiency
in % per test setting, mean ± std over the run's seeds for each method (the assignment rows, not
the score-threshold ones), the track follower, the paper's PAT λ = 50 and follower, then the
per-seed difference PTT − PAT λ = 50 (purity / efficiency points).

Several runs that differ only in their `seeds` (same data, test grid and training settings, so the
same test frames) are merged into one table over all their seeds; any other difference in their
`config.json` is refused, naming the key.

usage: scripts/results/track_compare_table.py runs/track-compare/<run>/summary.json [<run2>/summary.json ...]
"""
import json
import os
import statistics
import sys

# Kortus et al. (TMLR 2025), line graph, 5 seeds: PAT λ = 50 and the track follower (100 p+).
PAPER_PAT = {
    (50, 100): (95.0, 83.9), (50, 150): (96.3, 87.1), (50, 200): (96.5, 89.0),
    (100, 100): (87.4, 75.1), (100, 150): (92.0, 82.4), (100, 200): (92.5, 84.6),
    (150, 100): (76.8, 64.4), (150, 150): (85.1, 75.5), (150, 200): (88.1, 80.6),
}
PAPER_FOLLOWER = {(100, 100): (83.0, 74.6), (100, 150): (86.5, 79.0), (100, 200): (87.4, 80.3)}


def pm(values):
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def config_differences(a, b, key=""):
    """Keys where two run configs differ, ignoring the seeds and the command that set them."""
    if key in (".params.seeds", ".run"):
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in config_differences(a.get(k), b.get(k), f"{key}.{k}")]
    return [] if a == b else [key]


def merged(paths):
    """One summary over the runs' seeds; the runs must differ only in their seeds."""
    def load(p):
        try:
            return json.load(open(p))
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"cannot read {p}: {e}")

    runs = [(p, load(p), load(os.path.join(os.path.dirname(p), "config.json"))) for p in paths]
    p0, s, c0 = runs[0]
    seen = {t["seed"] for t in s["training"]}
    for p, other, c in runs[1:]:
        diff = config_differences(c0, c)
        if diff:
            sys.exit(f"{p} differs from {p0} in {', '.join(diff)}: only runs that differ in `seeds` can be merged")
        if other["follower"] != s["follower"]:
            sys.exit(f"{p} has other follower results than {p0}: not the same test frames")
        dup = seen & {t["seed"] for t in other["training"]}
        if dup:
            sys.exit(f"{p} repeats seeds {sorted(dup)} of an earlier run")
        seen |= {t["seed"] for t in other["training"]}
        index = {(c["primaries"], c["thickness_mm"], c["method"]): c for c in s["cells"]}
        if set(index) != {(c["primaries"], c["thickness_mm"], c["method"]) for c in other["cells"]}:
            sys.exit(f"{p} has other test settings or methods than {p0}")
        for cell in other["cells"]:
            index[(cell["primaries"], cell["thickness_mm"], cell["method"])]["per_seed"].extend(cell["per_seed"])
        s["training"].extend(other["training"])
    return s


def main(paths):
    s = merged(paths)
    methods = []
    cells = {}
    for c in s["cells"]:
        if "score" in c["method"]:
            continue
        if c["method"] not in methods:
            methods.append(c["method"])
        cells[(c["primaries"], int(c["thickness_mm"]), c["method"])] = c["per_seed"]
    follower = {(f["primaries"], int(f["thickness_mm"])): f["metrics"] for f in s["follower"]}
    seeds = sorted({t["seed"] for t in s["training"]})
    settings = sorted({(p, t) for p, t, _ in cells})
    head = ["p⁺/frame", "water mm"] + methods + ["follower", "paper PAT λ=50", "paper follower"]
    print(f"Seeds {seeds}; purity / efficiency %, mean ± std over seeds.\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for p, t in settings:
        row = [str(p), str(t)]
        for m in methods:
            ps = cells[(p, t, m)]
            row.append(f"{pm([x['purity'] for x in ps])} / {pm([x['efficiency'] for x in ps])}")
        f = follower.get((p, t))
        row.append(f"{100 * f['purity']:.1f} / {100 * f['efficiency']:.1f}" if f else "—")
        pp = PAPER_PAT.get((p, t))
        row.append(f"{pp[0]} / {pp[1]}" if pp else "—")
        pf = PAPER_FOLLOWER.get((p, t))
        row.append(f"{pf[0]} / {pf[1]}" if pf else "—")
        print("| " + " | ".join(row) + " |")
    if "PTT" in methods and "PAT λ=50" in methods:
        print("\nPTT − PAT λ=50 per seed (purity / efficiency points):\n")
        print("| p⁺/frame | water mm | " + " | ".join(f"seed {x}" for x in seeds) + " |")
        print("|---|---|" + "---|" * len(seeds))
        for p, t in settings:
            a, b = cells[(p, t, "PTT")], cells[(p, t, "PAT λ=50")]
            d = [f"{100 * (x['purity'] - y['purity']):+.1f} / {100 * (x['efficiency'] - y['efficiency']):+.1f}"
                 for x, y in zip(a, b)]
            print(f"| {p} | {t} | " + " | ".join(d) + " |")
    best = {t["variant"] + f" seed {t['seed']}": t["best_purity"] for t in s["training"]}
    print("\nBest validation purity %: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in best.items()))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
