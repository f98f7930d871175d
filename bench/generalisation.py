"""The paper's generalisation check (section 4.5) with the data sources this project has.

    python bench/generalisation.py --data data/brain --preset cpu --out runs/generalisation_cpu

The paper searched a cell on knee data (NasN_Knee), retrained it on brain data and compared it
with a cell searched on the brain data itself (NasN_Brain) and with the baselines retrained on
brain. Here the two sources are two different real T1 head scans of the prepared dataset
(``nascsmri data prepare``): the cell is searched on the MNI152 template alone (source A:
skull-stripped, average of 152 subjects) and on the ch2 scan alone (source B: one person, with
skull and scalp); then, on source B's training slices with one budget and seed, the script
retrains

* NasN with the cell searched on A  (transferred: the paper's NasN_Knee on brain),
* NasN with the cell searched on B  (native: the paper's NasN_Brain),
* DCCNN-3                            (the baseline of the shipped weights),

and evaluates all three on the held-out test subject (``itk_t1``) at 4x and 8x with the same
seeded masks and metric code as ``bench/reproduce_table.py``. Every step is skipped when done
and resumes from its last checkpoint when interrupted: rerun the same command.

Outputs in ``--out``: ``data_<source>/`` (the per-source splits, symbolic links into
``--data``), ``search_<source>/``, ``runs/<label>/``, ``eval/<label>.json``, ``results.md``,
``results.json``, ``results.png`` (validation PSNR per epoch; test PSNR per volume at 4x, 8x).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from backend import config as cfg  # noqa: E402
from backend.datasets import dataset_files  # noqa: E402
from backend.errors import InputError  # noqa: E402
from backend.files import atomic_write_bytes, save_figure, write_json  # noqa: E402
from backend.models import Genotype, load_model, model_info  # noqa: E402
from backend.recon import NetworkReconstructor  # noqa: E402
from backend.devices import resolve_device
from backend.progress import run
from backend.search.search import search  # noqa: E402
from backend.training.train import train  # noqa: E402
from reproduce_table import aggregate, evaluate, fmt  # noqa: E402

SPLITS = ("train", "val", "test")


def source_dataset(data: Path, source: str, out: Path) -> Path:
    """``out/data_<source>``: the train and val files of one source, and the shared test files,
    as symbolic links into ``data`` (the slabs are exactly the prepared ones)."""
    folder = out / f"data_{source}"
    for split in SPLITS:
        files = dataset_files(data, split)
        chosen = files if split == "test" else [f for f in files if f.name.startswith(f"{source}_")]
        if not chosen:
            raise InputError(data / split, f"no files of source '{source}' (sources are the file name prefixes)")
        (folder / split).mkdir(parents=True, exist_ok=True)
        for f in chosen:
            link = folder / split / f.name
            if not link.exists():
                os.symlink(f.resolve(), link)
    return folder


def plot_results(path: Path, histories: dict[str, list[dict]], results: dict[str, dict]) -> Path:
    """Validation PSNR per epoch of every retraining, and test PSNR per volume at 4x and 8x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    for label, history in histories.items():
        axes[0].plot([h["epoch"] for h in history], [h["psnr"] for h in history], marker="o", ms=3, label=label)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("validation PSNR dB (4x and 8x)")
    axes[0].set_title("retraining")
    axes[0].legend(fontsize=8)
    for ax, acc in zip(axes[1:], ("4x", "8x")):
        for label, result in results.items():
            names = sorted(result["volumes"])
            ax.plot(range(len(names)), [result["volumes"][n][acc]["psnr"] for n in names], marker="o", label=label)
        ax.set_xticks(range(len(names)), [n.rsplit(".", 1)[0] for n in names], rotation=30, fontsize=7)
        ax.set_ylabel("PSNR dB")
        ax.set_title(f"held-out test volumes, {acc}")
    path = save_figure(fig, path, dpi=100)
    plt.close(fig)
    return path


def _progress(prefix: str):
    return lambda e: print(f"  {prefix}: {e.message}", flush=True) if e.kind in ("epoch", "done") else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a prepared dataset (nascsmri data prepare)")
    parser.add_argument("--search-source", default="mni152", help="source A: the cell to transfer is searched here")
    parser.add_argument("--train-source", default="ch2", help="source B: the native search and all retraining")
    parser.add_argument("--preset", default="cpu", choices=sorted(cfg.TRAIN_PRESETS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True)
    # smaller budgets, for a smoke test of the whole pipeline (the results are then meaningless)
    parser.add_argument("--search-epochs", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    args = parser.parse_args(argv)

    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python bench/generalisation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    device = resolve_device(args.device)
    a, b = args.search_source, args.train_source
    datasets = {s: source_dataset(data, s, out) for s in (a, b)}
    t_start = time.time()

    genotypes: dict[str, Genotype] = {}
    search_info = {}
    for source in (a, b):
        folder = out / f"search_{source}"
        config = cfg.apply_preset(cfg.SearchConfig(data=str(datasets[source]), preset=args.preset, device=args.device),
                                  cfg.SEARCH_PRESETS,
                                  {"epochs": args.search_epochs, "steps_per_epoch": args.steps_per_epoch,
                                   "min_epochs": args.search_epochs and min(args.search_epochs, 8),
                                   "warmup_epochs": args.search_epochs and min(args.search_epochs - 1, 4)})
        print(f"search on {source} ({len(dataset_files(datasets[source], 'train'))} training files)", flush=True)
        summary = run(search(config, str(folder), resume=(folder / "checkpoint.pt").exists()), _progress(source))
        genotypes[source] = Genotype.from_dict(summary["genotype"])
        history = json.loads((folder / "history.json").read_text())
        search_info[source] = {"genotype": summary["genotype"], "epochs": len(history),
                               "seconds": sum(h["seconds"] for h in history)}

    rows = [(f"NasN, cell searched on {a}", f"NasN_cell_{a}", "nasn", a),
            (f"NasN, cell searched on {b}", f"NasN_cell_{b}", "nasn", b),
            ("DCCNN-3", "DCCNN-3", "dccnn", None)]
    test_files = dataset_files(datasets[b], "test")
    results, info, wall, histories = {}, {}, {}, {}
    for label, key, name, cell_source in rows:
        run_dir = out / "runs" / key
        genotype_file = None
        if cell_source is not None:
            genotype_file = out / f"genotype_{cell_source}.json"
            if not genotype_file.exists():
                genotypes[cell_source].save(genotype_file)
        config = cfg.apply_preset(
            cfg.TrainConfig(model=name, blocks=3 if name == "dccnn" else None, data=str(datasets[b]),
                            preset=args.preset, device=args.device,
                            genotype=str(genotype_file) if genotype_file else None),
            cfg.TRAIN_PRESETS, {"epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch})
        print(f"{label}: training on {b} ({config.epochs} epochs x {config.steps_per_epoch} steps)", flush=True)
        run(train(config, str(run_dir), resume=(run_dir / "checkpoint.pt").exists()), _progress(key))
        history = histories[label] = json.loads((run_dir / "history.json").read_text())
        model, _ = load_model(run_dir / "best.safetensors")
        results[label] = evaluate(key, NetworkReconstructor(model, device, "reference"), test_files,
                                  out / "eval" / f"{key}.json")
        info[label] = model_info(name, genotype=genotypes.get(cell_source), blocks=3 if name == "dccnn" else None)
        wall[label] = {"train_s": sum(h["seconds"] for h in history), "best_epoch": max(history, key=lambda h: h["psnr"])["epoch"]}

    lines = [f"# Generalisation check: a cell searched on one source, retrained on another ({args.preset} preset)", "",
             f"Command: `{command}` (wall time of this call: {time.time() - t_start:.0f} s)", "",
             f"Searches: on `{a}` and on `{b}` alone (search preset `{args.preset}`); retraining on `{b}`'s "
             f"training split, one budget and seed for every row; test: {len(test_files)} volumes of the held-out "
             "subject (" + ", ".join(f.name for f in test_files) + "), fastMRI random masks seeded per volume, "
             "the metric code of bench/reproduce_table.py.", ""]
    for source in (a, b):
        s = search_info[source]
        lines.append(f"* cell searched on `{source}` ({s['epochs']} epochs, {s['seconds']:.0f} s): "
                     f"`{json.dumps(s['genotype']['nodes'])}`")
    lines.append("")
    for acc in ("4x", "8x"):
        lines += [f"## Test subject at {acc}", "", "| model | PSNR dB | SSIM | NMSE (x1e-2) | GFLOPs | params | train s |",
                  "|---|---|---|---|---|---|---|"]
        for label in results:
            s = aggregate(results[label], acc)
            lines.append(f"| {label} | {fmt(s['psnr'])} | {fmt(s['ssim'], digits=4)} | {fmt(s['nmse'], 100)} | "
                         f"{info[label]['gflops']:.2f} | {info[label]['params']:,} | {wall[label]['train_s']:.0f} |")
        lines.append("")
    lines += ["![validation PSNR per epoch; test PSNR per volume](results.png)", ""]
    plot_results(out / "results.png", histories, results)
    atomic_write_bytes(out / "results.md", ("\n".join(lines) + "\n").encode())
    write_json(out / "results.json", {"command": command, "searches": search_info,
                                      "rows": {label: {"4x": aggregate(results[label], "4x"),
                                                       "8x": aggregate(results[label], "8x"),
                                                       **info[label], **wall[label]} for label in results}})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
