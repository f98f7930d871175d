"""Which training loss wins on validation? The loss comparison's table and curves (issue #15).

    python bench/loss_compare.py [--runs runs/loss_compare] [--results bench/results/loss_compare]

Reads the runs ``RUNS/nasn_<loss>/`` that ``runs/loss_compare/run.sh`` trains (NasN, the
shipped genotype, the ``cpu`` preset, seed 0, one run per loss ``l1``, ``ssim``, ``l1+ssim``:
the same data, crops, masks and augmentations, drawn from ``(seed, epoch, index)``), and reports
per loss the best epoch by validation PSNR (mean of 4x and 8x, the trainer's criterion) with its
PSNR / SSIM per acceleration, the best SSIM of any epoch, the epochs finished and the training
seconds. The winner is named on both metrics. Writes ``RESULTS/results.json``, ``results.md``
and ``curves.png`` (validation PSNR and SSIM per epoch, one line per loss). Runs not finished
are reported as such (``finished: false``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.files import atomic_write_bytes, save_figure, write_json

LOSSES = ("l1", "ssim", "l1+ssim")
RESULTS = Path(__file__).resolve().parent / "results" / "loss_compare"


def summarise(run: Path) -> dict | None:
    """One run's summary, or None when it has no finished epoch."""
    path = run / "history.json"
    if not path.exists():
        return None
    history = json.loads(path.read_text())
    if not history:
        return None
    events = (run / "events.jsonl").read_text() if (run / "events.jsonl").exists() else ""
    best = max(history, key=lambda e: e["psnr"])
    best_ssim = max(history, key=lambda e: e["ssim"])
    keys = ("psnr", "ssim", "psnr_4x", "ssim_4x", "psnr_8x", "ssim_8x")
    return {"epochs": len(history), "finished": '"kind": "done"' in events,
            "best_epoch": best["epoch"], "best": {k: best[k] for k in keys if k in best},
            "best_ssim_epoch": best_ssim["epoch"], "best_ssim": best_ssim["ssim"],
            "train_seconds": sum(e.get("seconds", 0.0) for e in history),
            "curve": {"epoch": [e["epoch"] for e in history], "psnr": [e["psnr"] for e in history],
                      "ssim": [e["ssim"] for e in history]}}


def report(runs: Path, results: Path) -> dict:
    rows = {loss: s for loss in LOSSES if (s := summarise(runs / f"nasn_{loss}")) is not None}
    if not rows:
        raise SystemExit(f"loss_compare: no run with a finished epoch under {runs}")
    winner = {m: max(rows, key=lambda loss: rows[loss]["best"][m]) for m in ("psnr", "ssim")}
    out = {"benchmark": "loss_compare", "runs": str(runs), "rows": rows, "winner": winner,
           "all_finished": all(r["finished"] for r in rows.values()) and len(rows) == len(LOSSES)}
    results.mkdir(parents=True, exist_ok=True)
    write_json(results / "results.json", out)
    lines = ["Loss comparison: NasN, cpu preset, seed 0; the best epoch by validation PSNR (mean of 4x and 8x)",
             "", "| loss | epochs | best epoch | PSNR dB | SSIM | PSNR 4x / 8x | SSIM 4x / 8x | best SSIM (epoch) | hours (1 thread, wall) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for loss, r in rows.items():
        b = r["best"]
        done = "" if r["finished"] else " (running)"
        lines.append(f"| {loss} | {r['epochs']}{done} | {r['best_epoch']} | {b['psnr']:.2f} | {b['ssim']:.4f} | "
                     f"{b.get('psnr_4x', float('nan')):.2f} / {b.get('psnr_8x', float('nan')):.2f} | "
                     f"{b.get('ssim_4x', float('nan')):.4f} / {b.get('ssim_8x', float('nan')):.4f} | "
                     f"{r['best_ssim']:.4f} ({r['best_ssim_epoch']}) | {r['train_seconds'] / 3600:.2f} |")
    lines += ["", f"Highest validation PSNR: {winner['psnr']}; highest SSIM (at the best-PSNR epoch): {winner['ssim']}"
              + ("" if out["all_finished"] else " (not every run has finished)")]
    atomic_write_bytes(results / "results.md", ("\n".join(lines) + "\n").encode())
    figure(rows, results / "curves.png")
    print("\n".join(lines))
    return out


def figure(rows: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), constrained_layout=True)
    for ax, key, label in zip(fig.subplots(1, 2), ("psnr", "ssim"), ("validation PSNR dB", "validation SSIM")):
        for loss, r in rows.items():
            ax.plot([e + 1 for e in r["curve"]["epoch"]], r["curve"][key], marker=".", label=loss)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    save_figure(fig, path, dpi=90)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=Path, default=Path("runs/loss_compare"))
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    return report(args.runs, args.results)


if __name__ == "__main__":
    main()
