"""Two networks' realistic-benchmark scores, paired slice by slice (issue #16, item 6).

    python bench/compare_results.py A/results.json[:METHOD] B/results.json[:METHOD]
        [--labels "shipped NasN" random4] [--out DIR]

Each argument is a ``results.json`` of ``bench/realistic.py`` or ``bench/multicoil.py`` (whose
RSS-path rows are ``METHOD (RSS path)``) and
the method whose per-slice scores are taken (default ``nasn``), e.g. the shipped cell's
NasN in one run and another cell's NasN, trained with the same recipe, in a second run on the
same test files. Both runs must hold the same test files and the same slice counts per
category and acceleration (the cases and seeded masks are a pure function of the data), so the
scores pair slice by slice. Per category and acceleration: each side's mean and the paired
difference B - A with its 95% bootstrap interval (:func:`backend.benchmark.paired`) and how
many slices B wins. Writes ``OUT/compare.json`` and ``OUT/compare.md`` when ``--out`` is
given; prints the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from backend import benchmark as B
from backend.files import atomic_write_bytes, write_json


def load(spec: str) -> tuple[Path, str, dict]:
    """``PATH[:METHOD]`` -> (path, method, the results JSON)."""
    path, method = Path(spec), ""
    if not path.exists() and ":" in spec:  # the suffix after the last colon names the method
        head, _, method = spec.rpartition(":")
        path = Path(head)
    if not path.is_file():
        raise SystemExit(f"compare_results: {path}: no such results file")
    report = json.loads(path.read_text())
    method = method or "nasn"
    if method not in report.get("scores", {}):
        raise SystemExit(f"compare_results: {path}: no scores for method {method!r} "
                         f"(it has {', '.join(report.get('scores', {})) or 'none'})")
    return path, method, report


def compare(a: dict, b: dict, method_a: str, method_b: str) -> dict:
    """``{"category|acc": {"a": {...}, "b": {...}, "b_minus_a": {"psnr": paired, "ssim": paired}}}``
    over the categories and accelerations both runs hold."""
    if a.get("test_files") != b.get("test_files"):
        raise SystemExit("compare_results: the two runs were made on different test files")
    sa, sb = a["scores"][method_a], b["scores"][method_b]
    table = {}
    for category in [c for c in B.CATEGORIES + B.EXTRA_CATEGORIES if c in sa and c in sb]:
        for acc in [x for x in sa[category] if x in sb[category]]:
            one, two = sa[category][acc], sb[category][acc]
            if len(one["psnr"]) != len(two["psnr"]):
                raise SystemExit(f"compare_results: {category} {acc}x: {len(one['psnr'])} slices against "
                                 f"{len(two['psnr'])}: not the same cases")
            table[f"{category}|{acc}"] = {
                "a": {k: float(np.mean(one[k])) for k in ("psnr", "ssim")},
                "b": {k: float(np.mean(two[k])) for k in ("psnr", "ssim")},
                "b_minus_a": {k: B.paired(two[k], one[k], seed=7) for k in ("psnr", "ssim")}}
    if not table:
        raise SystemExit("compare_results: the two runs share no category and acceleration")
    return table


def markdown(table: dict, label_a: str, label_b: str) -> str:
    lines = [f"Paired {label_b} - {label_a} over slices: mean [95% bootstrap CI] (slices where {label_b} is better)", "",
             f"| category | acc | {label_a} PSNR / SSIM | {label_b} PSNR / SSIM | ΔPSNR dB | ΔSSIM |",
             "|---|---|---|---|---|---|"]
    for key, row in table.items():
        category, acc = key.split("|")
        p, s = row["b_minus_a"]["psnr"], row["b_minus_a"]["ssim"]
        lines.append(f"| {category} | {acc}x | {row['a']['psnr']:.2f} / {row['a']['ssim']:.4f} | "
                     f"{row['b']['psnr']:.2f} / {row['b']['ssim']:.4f} | "
                     f"{p['mean']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] ({p['wins']}/{p['n']}) | "
                     f"{s['mean']:+.4f} [{s['ci_low']:+.4f}, {s['ci_high']:+.4f}] ({s['wins']}/{s['n']}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", help="first results.json[:METHOD] (the baseline)")
    ap.add_argument("b", help="second results.json[:METHOD]")
    ap.add_argument("--labels", nargs=2, default=None, metavar=("A", "B"), help="names in the table")
    ap.add_argument("--out", type=Path, default=None, help="folder for compare.json and compare.md")
    args = ap.parse_args(argv)
    (path_a, method_a, a), (path_b, method_b, b) = load(args.a), load(args.b)
    label_a, label_b = args.labels or (f"{path_a.parent.name}:{method_a}", f"{path_b.parent.name}:{method_b}")
    table = compare(a, b, method_a, method_b)
    text = markdown(table, label_a, label_b)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "compare.json", {"a": {"results": str(path_a), "method": method_a, "weights": a.get("weights"),
                                                     "label": label_a},
                                               "b": {"results": str(path_b), "method": method_b, "weights": b.get("weights"),
                                                     "label": label_b},
                                               "table": table})
        atomic_write_bytes(args.out / "compare.md", text.encode())
    print(text)
    return table


if __name__ == "__main__":
    main()
