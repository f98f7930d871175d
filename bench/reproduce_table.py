"""Reproduce the paper's Table 1 protocol on the project's real MRI data.

    python bench/reproduce_table.py --data data/brain --preset cpu [--models DCCNN-3 NasN ...]

Every network of Table 1 is trained under one equal budget (the ``--preset`` of
``nascsmri train``, same data, seed, crops, epochs and steps) on the training split, then all
of them, plus zero-filled and TV, are evaluated on the held-out test volumes with the same
seeded per-volume masks and the same metric code, at 4x and at 8x (and with the paper's
protocol: half the volumes at each). Writes into ``--out`` (default
``bench/results/table_<preset>``): ``results.md`` (tables, command, wall times), ``results.csv``,
``psnr_vs_gflops.png``, and per-model run folders under ``runs/`` (so an interrupted run
resumes: finished models are skipped, a half-trained one continues from its checkpoint).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from pathlib import Path



from backend import config as cfg  # noqa: E402
from backend.datasets import dataset_files  # noqa: E402
from backend.files import atomic_write_bytes, save_figure, write_json  # noqa: E402
from backend.metrics import summarise  # noqa: E402
from backend.models import Genotype, load_model, model_info  # noqa: E402
from backend.models.genotype import default_genotype  # noqa: E402
from backend.recon import NetworkReconstructor, make_reconstructor, reconstruct_volume  # noqa: E402
from backend.devices import resolve_device
from backend.progress import run
from backend.training.train import train  # noqa: E402

TABLE: list[tuple[str, str, int | None]] = [
    ("U-net", "unet", None),
    ("DCCNN-3", "dccnn", 3),
    ("DCCNN-11", "dccnn", 11),
    ("MoDL-3", "modl", 3),
    ("MoDL-11", "modl", 11),
    ("RDN-3", "rdn", 3),
    ("RDN-8", "rdn", 8),
    ("NasN", "nasn", None),
]
CLASSICAL = [("zero-filled", "zero-filled"), ("TV", "tv")]
ACCS = (4, 8)


def evaluate(label: str, reconstructor, files: list[Path], cache: Path) -> dict:
    """Per-volume metrics of one method at 4x and 8x (cached as JSON)."""
    if cache.exists():
        return json.loads(cache.read_text())
    out: dict = {"volumes": {}, "seconds": 0.0}
    t0 = time.time()
    for acc in ACCS:
        config = cfg.ReconConfig(acceleration=acc)
        for f in files:
            m = run(reconstruct_volume(f, config, reconstructor)).metrics
            out["volumes"].setdefault(f.name, {})[f"{acc}x"] = m.as_dict()
        print(f"  {label}: {acc}x done", flush=True)
    out["seconds"] = time.time() - t0
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_json(cache, out)  # atomic: a run killed here resumes without a half-written cache
    return out


class _Row:
    def __init__(self, mse, nmse, psnr, ssim):
        self.mse, self.nmse, self.psnr, self.ssim = mse, nmse, psnr, ssim


def aggregate(result: dict, protocol: str) -> dict:
    """mean/std over volumes at ``4x``, ``8x``, or ``paper`` (alternating 4x/8x by volume)."""
    names = sorted(result["volumes"])
    rows = []
    for i, name in enumerate(names):
        acc = protocol if protocol != "paper" else ("4x" if i % 2 == 0 else "8x")
        rows.append(_Row(**result["volumes"][name][acc]))
    return summarise(rows)


def fmt(stat: tuple[float, float], scale: float = 1.0, digits: int = 2) -> str:
    return f"{stat[0] * scale:.{digits}f} ± {stat[1] * scale:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/brain")
    parser.add_argument("--preset", default="cpu", choices=sorted(cfg.TRAIN_PRESETS))
    parser.add_argument("--models", nargs="+", default=None, help=f"subset of: {' '.join(l for l, _, _ in TABLE)}")
    parser.add_argument("--genotype", default=None, help="NasN genotype (default: the shipped one)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--tv-backend", default="auto", choices=("auto", "bart", "torch"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=None)
    parser.add_argument("--shipped", action="store_true",
                        help="no training: evaluate the weights that ship with the package (NasN, DCCNN-3)")
    args = parser.parse_args()

    default = "shipped_test" if args.shipped else f"table_{args.preset}"
    out = Path(args.out or Path(__file__).parent / "results" / default)
    out.mkdir(parents=True, exist_ok=True)
    command = "python bench/reproduce_table.py " + " ".join(sys.argv[1:])
    test_files = dataset_files(args.data, "test")
    device = resolve_device(args.device)
    selected = [row for row in TABLE if args.models is None or row[0] in args.models]
    genotype = Genotype.load(args.genotype) if args.genotype else default_genotype()
    results, info, wall = {}, {}, {}

    for label, method in CLASSICAL:
        print(f"{label}: evaluating", flush=True)
        rec = make_reconstructor(cfg.ReconConfig(model=method, tv_backend=args.tv_backend))
        results[label] = evaluate(label, rec, test_files, out / "eval" / f"{label}.json")
        wall[label] = {"train_s": 0.0, "eval_s": results[label]["seconds"]}

    if args.shipped:
        from backend.models import shipped_weights

        for label, name, blocks in [row for row in TABLE if row[1] in ("nasn", "dccnn") and row[2] in (None, 3)]:
            model, _ = load_model(shipped_weights(name))
            results[label] = evaluate(label, NetworkReconstructor(model, device, "reference"), test_files, out / "eval" / f"{label}.json")
            info[label] = model_info(name, genotype=model.config.genotype, blocks=blocks)
            wall[label] = {"train_s": float("nan"), "eval_s": results[label]["seconds"]}
        selected = []

    for label, name, blocks in selected:
        run_dir = out / "runs" / label
        config = cfg.apply_preset(
            cfg.TrainConfig(model=name, blocks=blocks, data=args.data, preset=args.preset, device=args.device,
                            genotype=str(out / "nasn_genotype.json") if name == "nasn" else None),
            cfg.TRAIN_PRESETS, {"epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch})
        if name == "nasn" and not (out / "nasn_genotype.json").exists():
            genotype.save(out / "nasn_genotype.json")
        print(f"{label}: training ({config.epochs} epochs x {config.steps_per_epoch} steps, crop {config.crop})", flush=True)
        t0 = time.time()
        summary = run(train(config, str(run_dir), resume=(run_dir / "checkpoint.pt").exists()),
                      lambda e: print("  " + e.message, flush=True) if e.kind == "epoch" else None)
        history = json.loads((run_dir / "history.json").read_text())
        train_s = sum(h["seconds"] for h in history)
        model, _ = load_model(run_dir / "best.safetensors")
        results[label] = evaluate(label, NetworkReconstructor(model, device, "reference"), test_files, out / "eval" / f"{label}.json")
        info[label] = model_info(name, genotype=genotype if name == "nasn" else None, blocks=blocks)
        wall[label] = {"train_s": train_s, "eval_s": results[label]["seconds"], "best_epoch": summary["best"]["epoch"]}
        print(f"{label}: done in {time.time() - t0:.0f} s this call", flush=True)

    write_outputs(out, results, info, wall, command, args, test_files, genotype)


def write_outputs(out, results, info, wall, command, args, test_files, genotype) -> None:
    labels = [l for l, _ in CLASSICAL] + [l for l, _, _ in TABLE if l in results]
    title = "shipped weights (cpu preset), no retraining" if args.shipped else f"{args.preset} preset"
    lines = [f"# Table 1 protocol on real MRI ({title})", "",
             f"Command: `{command}`", "",
             f"Test volumes: {len(test_files)} ({', '.join(f.name for f in test_files)}); masks: fastMRI random, "
             "per-volume seed from the file name (identical for every method); metrics: fastMRI evaluate.py "
             "conventions (backend/metrics.py). FLOPs: conv multiply-accumulates + bias adds for one 320x320 "
             "2-channel input.", "", f"NasN genotype: `{json.dumps(genotype.to_dict())}`", ""]
    csv_rows = []
    for protocol in ("4x", "8x", "paper"):
        title = {"4x": "All test volumes at 4x", "8x": "All test volumes at 8x",
                 "paper": "Paper protocol: half the volumes at 4x, half at 8x"}[protocol]
        lines += [f"## {title}", "", "| model | MSE | NMSE (x1e-2) | PSNR dB | SSIM | GFLOPs | params | train s |",
                  "|---|---|---|---|---|---|---|---|"]
        for label in labels:
            s = aggregate(results[label], protocol)
            gf = f"{info[label]['gflops']:.2f}" if label in info else "-"
            pa = f"{info[label]['params']:,}" if label in info else "-"
            tr = f"{wall[label]['train_s']:.0f}" if label in info and wall[label]["train_s"] == wall[label]["train_s"] else "-"
            lines.append(f"| {label} | {s['mse'][0]:.3g} ± {s['mse'][1]:.2g} | {fmt(s['nmse'], 100)} | "
                         f"{fmt(s['psnr'])} | {fmt(s['ssim'], digits=4)} | {gf} | {pa} | {tr} |")
            csv_rows.append({"protocol": protocol, "model": label,
                             **{f"{k}_{j}": s[k][i] for k in ("mse", "nmse", "psnr", "ssim") for i, j in ((0, "mean"), (1, "std"))},
                             "gflops": info.get(label, {}).get("gflops"), "params": info.get(label, {}).get("params"),
                             "train_seconds": wall[label]["train_s"], "eval_seconds": wall[label]["eval_s"]})
        lines.append("")
    atomic_write_bytes(out / "results.md", ("\n".join(lines) + "\n").encode())
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(csv_rows[0]))
    writer.writeheader()
    writer.writerows(csv_rows)
    atomic_write_bytes(out / "results.csv", table.getvalue().encode())
    plot(out, results, info, labels)
    print("\n".join(lines))


def plot(out: Path, results: dict, info: dict, labels: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for ax, acc in zip(axes, ("4x", "8x")):
        for label in labels:  # networks first, so the axis limits are known for the baselines
            if label in info:
                psnr = aggregate(results[label], acc)["psnr"][0]
                ax.scatter(info[label]["gflops"], psnr, s=40, color="tab:red" if label == "NasN" else "tab:blue")
                ax.annotate(label, (info[label]["gflops"], psnr), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.margins(x=0.15, y=0.1)
        for label in labels:
            if label not in info:
                psnr = aggregate(results[label], acc)["psnr"][0]
                ax.axhline(psnr, ls="--", lw=1, color="gray")
                ax.annotate(label, (0.01, psnr), xycoords=("axes fraction", "data"), textcoords="offset points",
                            xytext=(0, 3), fontsize=8, color="gray")
        ax.set_xlabel("GFLOPs (320x320)")
        ax.set_ylabel("PSNR dB (mean over test volumes)")
        ax.set_title(f"{acc}")
    save_figure(fig, out / "psnr_vs_gflops.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
