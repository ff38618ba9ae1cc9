#!/usr/bin/env python3
"""Markdown tables of a track-image run for docs/results/track-image.md.

Usage: python3 scripts/results/track_image_tables.py runs/track-image/<run>/summary.json
"""
import json
import sys


def fmt_ms(v, nd=2):
    return f"{v[0]:.{nd}f} ± {v[1]:.{nd}f}"


def main(path):
    s = json.load(open(path))
    methods = s["methods"]
    print("Per-track WEPL (Bragg-Kleeman fit) and radiograph, per method:\n")
    print("| method | placed tracks / primaries | WEPL bias (robust mean) mm | σ_MAD mm | RMS mm | beyond 10 mm % "
          "| radiograph RMS mm (robust mean / median per pixel) | pixels |")
    print("|---|---|---|---|---|---|---|---|")
    for m in methods:
        w = m["wepl_error"]["bragg_fit"]
        r, rm = m["radiograph_error"], m["radiograph_error_median"]
        placed = m["tracks"] - m["unplaced"]
        print(f"| {m['label']} | {placed} / {m['primaries']} | {w['robust_mean']:+.2f} | {w['sigma_mad']:.2f} | "
              f"{w['rms']:.1f} | {100 * w['tail_10mm']:.1f} | {r['rms']:.2f} / {rm['rms']:.2f} | {m['radiograph_pixels']} |")
    print("\nPlaced tracks by kind (count: WEPL bias (robust mean) / σ_MAD / RMS mm / % beyond 10 mm), "
          "Bragg-Kleeman fit:\n")
    print("| method | one primary | primary + its nuclear secondary | several primaries | repeat of a primary |")
    print("|---|---|---|---|---|")
    for m in methods:
        b = m.get("breakdown", {})
        cells = []
        for k in ["primary", "with_secondary", "mixed", "repeat"]:
            if k not in b:
                cells.append("0")
                continue
            n, st = b[k]
            cells.append(f"{n}: {st['robust_mean']:+.1f} / {st['sigma_mad']:.1f} / {st['rms']:.1f} / "
                         f"{100 * st['tail_10mm']:.0f}" if st else f"{n}: —")
        print(f"| {m['label']} | " + " | ".join(cells) + " |")
    if any("by_true_wepl" in m for m in methods):
        print("\nBy the true WEPL of the first hit's primary (the models were trained behind 100-200 mm of water): "
              "tracks, % with a nuclear secondary, % mixed, WEPL error (robust mean / σ_MAD / RMS mm / % beyond 10 mm):\n")
        print("| method | band | tracks | with secondary % | mixed % | WEPL error |")
        print("|---|---|---|---|---|---|")
        for m in methods:
            for band, b in m.get("by_true_wepl", {}).items():
                n = max(b["tracks"], 1)
                e = b["error"]
                err = (f"{e['robust_mean']:+.1f} / {e['sigma_mad']:.1f} / {e['rms']:.1f} / {100 * e['tail_10mm']:.0f}"
                       if e else "—")
                print(f"| {m['label']} | {band} | {b['tracks']} | {100 * b['kinds'].get('with_secondary', 0) / n:.1f} | "
                      f"{100 * b['kinds'].get('mixed', 0) / n:.1f} | {err} |")
    pct = s.get("pct")
    if not pct:
        return
    slices = pct["slices"]
    names = [n for n in slices[0]["rsp"] if n != "air"]
    for path in ["exit line", "spot → exit"]:
        print(f"\npCT slice, path model \"{path}\" (and the true-path floor): RSP error per region in %, "
              "air's reconstructed RSP (true 0.001):\n")
        print("| method | protons (cut) | mean / max abs insert error % | " + " | ".join(names) + " | air RSP |")
        print("|---|---|---|" + "---|" * len(names) + "---|")
        for r in slices:
            if r["path"] != path and r["label"] != "truth":
                continue
            cells = " | ".join(f"{r['error_pct'][n]:+.1f}" for n in names)
            print(f"| {r['label']} | {r['protons']} ({r['cut']}) | {r['mean_abs_insert_error_pct']:.2f} / "
                  f"{r['max_abs_insert_error_pct']:.2f} | {cells} | {r['rsp']['air']:.3f} |")
    print("\nAcross the two seeds of each model configuration (mean ± std over seeds; seed-to-seed: RMS "
          "difference between the two seeds' radiographs [mm] or slices [RSP, inside the cylinder]):\n")
    print("| configuration | radiograph RMS mm | seed-to-seed radiograph mm | pCT mean abs insert error %, exit line "
          "| spot → exit | seed-to-seed slice RSP, exit line |")
    print("|---|---|---|---|---|---|")
    groups = {g["group"]: g for g in s["groups"]}
    pg = {(g["group"], g["path"]): g for g in pct["groups"]}
    for name, g in groups.items():
        el, se = pg[(name, "exit line")], pg[(name, "spot → exit")]
        s2s = ", ".join(f"{v:.2f}" for v in g["seed_to_seed_rms"])
        s2p = ", ".join(f"{v:.3f}" for v in el["seed_to_seed_rms"])
        print(f"| {name} | {fmt_ms(g['radiograph_rms'])} | {s2s} | {fmt_ms(el['mean_abs_insert_error_pct'])} | "
              f"{fmt_ms(se['mean_abs_insert_error_pct'])} | {s2p} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
