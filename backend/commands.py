"""What each ``nascsmri`` subcommand does: ``cmd_<name>(args) -> exit status``.

:mod:`backend.cli` parses the command line (argparse, typed flags, the one-line error
contract) and calls one of these; each builds a config from :mod:`backend.config` (for
``search`` / ``train``: defaults < preset < ``--config FILE.json`` < flags, see
:func:`job_config_from_args`) and calls the backend.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import config as cfg
from .errors import InputError
from .progress import ProgressBar, run


def _recon_config(args) -> cfg.ReconConfig:
    return cfg.ReconConfig(
        model=args.model,
        weights=getattr(args, "weights", None),
        mask=args.mask,
        acceleration=args.acceleration,
        center_fraction=args.center_fraction,
        seed=args.seed,
        mask_file=args.mask_file,
        crop=getattr(args, "crop", None),
        tv_weight=getattr(args, "tv_weight", cfg.ReconConfig.tv_weight),
        tv_iterations=getattr(args, "tv_iterations", cfg.ReconConfig.tv_iterations),
        tv_backend=getattr(args, "tv_backend", "auto"),
        device=getattr(args, "device", "auto"),
        execution=getattr(args, "execution", cfg.ReconConfig.execution),
        batch_size=getattr(args, "batch_size", None) or cfg.ReconConfig.batch_size,
        coils=getattr(args, "coils", cfg.ReconConfig.coils),
        coil_maps=getattr(args, "coil_maps", cfg.ReconConfig.coil_maps),
    )


def cmd_reconstruct(args) -> int:
    from .recon import reconstruct_volume, write_reconstruction

    from .files import check_output_path

    from .files import check_distinct, check_input_file
    from .devices import resolve_device

    config = _recon_config(args)
    if config.model not in cfg.model_choices():
        raise InputError(None, f"unknown model {config.model!r}; choose from {', '.join(cfg.model_choices())}")
    for path in (args.out, args.json):
        if path:
            check_output_path(path)
    inputs = [args.input, config.mask_file]
    if config.weights:
        from .models.weights import sidecar_path

        inputs += [config.weights, sidecar_path(config.weights)]
    check_distinct([args.out, args.json], inputs)
    check_input_file(args.input)
    if config.mask_file:
        check_input_file(config.mask_file)
    if config.model in cfg.network_model_names():
        resolve_device(config.device)
    bar = ProgressBar(args.quiet)
    try:
        result = run(reconstruct_volume(args.input, config), bar)
    finally:
        bar.close()
    for notice in result.notices:
        print(f"notice: {notice}", file=sys.stderr)
    write_reconstruction(args.out, result, config)
    summary = {
        "file": os.path.basename(result.info.path),
        "model": config.model,
        "mask": "file" if result.info.kind == "test" else ("file" if config.mask_file else config.mask),
        "acceleration": result.mask.acceleration,
        "realised_acceleration": round(result.mask.realised_acceleration, 4),
        "slices": int(result.reconstruction.shape[0]),
        "notices": list(result.notices),
    }
    if result.metrics is not None:
        summary.update(result.metrics.as_dict())
    if args.json:
        from .files import write_json

        write_json(args.json, summary)
    line = f"{summary['file']}: {config.model} at {summary['realised_acceleration']:.2f}x realised"
    if result.metrics is not None:
        m = result.metrics
        line += f"  PSNR {m.psnr:.2f} dB  SSIM {m.ssim:.4f}  NMSE {m.nmse:.4g}"
    print(line)
    print(f"wrote {args.out}")
    return 0


# -- evaluate ------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    from .evaluate import evaluate_dirs, format_table
    from .files import check_output_path

    if args.json:
        from .files import check_distinct

        check_output_path(args.json)
        check_distinct([args.json], [f for folder in (args.targets, args.predictions)
                                     if os.path.isdir(folder) for f in Path(folder).glob("*.h5")])
    bar = ProgressBar(args.quiet, unit="volume")
    try:
        report = run(evaluate_dirs(args.targets, args.predictions), bar)
    finally:
        bar.close()
    print(format_table(report))
    if args.json:
        from .files import write_json

        write_json(args.json, report)
    return 0


# -- data ----------------------------------------------------------------------------------
def cmd_data_prepare(args) -> int:
    from .datasets import SOURCES, prepare_dataset

    unknown = [name for name in (args.sources or []) if name not in SOURCES]
    if unknown:  # before the output folder is made
        raise InputError(None, f"--sources: unknown source(s) {', '.join(map(repr, unknown))}; "
                               f"choose from {', '.join(sorted(SOURCES))}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(args.out, "exists and is not a folder")
    config = cfg.PrepareConfig(size=args.size, slab=args.slab)
    bar = ProgressBar(args.quiet, unit="slab")
    try:
        manifest = run(prepare_dataset(args.out, config, args.sources), bar)
    finally:
        bar.close()
    counts: dict[str, int] = {}
    for entry in manifest["files"]:
        counts[entry["split"]] = counts.get(entry["split"], 0) + entry["slices"]
    print(f"wrote {len(manifest['files'])} files to {args.out}: " + ", ".join(f"{k} {v} slices" for k, v in sorted(counts.items())))
    return 0


def cmd_data_sample(args) -> int:
    from .sample import make_sample

    path = make_sample(args.out)
    print(f"wrote {path}")
    return 0


# -- train / search ------------------------------------------------------------------------
def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _run_job(gen, quiet: bool) -> dict:
    """Drive a search/training generator: a progress bar for steps, a line per epoch.

    Under torchrun only rank 0 reports.
    """
    bar = ProgressBar(quiet or not _is_main_rank(), unit="step")

    def show(event) -> None:
        if not _is_main_rank():
            return
        bar(event)
        if event.kind in ("start", "epoch", "done"):
            (bar.bar.write if bar.bar is not None else print)(event.message)

    try:
        return run(gen, show)
    finally:
        bar.close()


def _check_run_out(out: str, data: str | None) -> None:
    """The run folder: not a file, not the data folder (checked before anything is made)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise InputError(path, "exists and is not a folder")
    existing = next((q for q in (path, *path.parents) if q.exists()), Path("."))
    if not existing.is_dir():
        raise InputError(existing, "is not a folder")
    if data and os.path.isdir(data) and path.exists() and os.path.samefile(path, data):
        raise InputError(path, "is the --data folder: choose another --out")


def _check_architecture(config, resume: bool = False) -> None:
    """The network a train config describes can be built (genotype read, sizes bounded, at most
    MAX_PARAMETERS parameters), checked on the meta device before the run folder is made, and
    the ``init_weights`` file (unless resuming: the checkpoint holds the weights) fits it."""
    from .models.registry import check_parameter_count, model_config_of

    if config.model == "nasn" and config.blocks is not None:
        raise InputError(None, "--blocks does not apply to nasn")
    check_parameter_count(model_config_of(config))
    if config.init_weights is not None and not resume:
        from .training.train import initial_weights

        initial_weights(config)  # read and matched now: a bad file fails before the run folder exists


def _job_flags(args, kind: str) -> dict:
    """The config fields a ``search`` / ``train`` command line sets (None: flag not given)."""
    flags = {"data": args.data, "preset": args.preset, "seed": args.seed, "device": args.device,
             "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch, "crop": args.crop,
             "coils": getattr(args, "coils", None)}
    if kind == "train":
        return {**flags, "model": args.model, "genotype": args.genotype, "blocks": args.blocks,
                "loss": args.loss, "augment": False if args.no_augment else None, "init_weights": args.init}
    return {**flags, "space": args.space, "nodes": args.nodes, "channels": args.channels, "cells": args.cells,
            "patience": args.patience, "warmup_epochs": args.warmup_epochs, "method": args.method,
            "select": args.select}


def job_config_from_args(args, kind: str):
    """The job's config: its defaults, then its preset, then ``--config FILE.json``, then the
    flags given on the command line (a flag left out is None and does not count)."""
    flags = _job_flags(args, kind)
    from .job_config import job_config, read_config_file

    values = read_config_file(args.config, kind) if args.config else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    for required in ("data", "model") if kind == "train" else ("data",):
        if required not in values:
            raise InputError(args.config, f"--{required} is required (on the command line or as "
                                          f"\"{required}\" in --config)")
    return job_config(kind, values, source=args.config)


def cmd_train(args) -> int:
    from .devices import resolve_device
    from .training.train import train

    config = job_config_from_args(args, "train")
    _check_run_out(args.out, config.data)
    resolve_device(config.device)
    _check_architecture(config, resume=args.resume)
    summary = _run_job(train(config, args.out, resume=args.resume), args.quiet)
    if not _is_main_rank():
        return 0
    best = summary["best"]
    print(f"best epoch {best['epoch'] + 1}: validation PSNR {best['psnr']:.2f} dB, SSIM {best['ssim']:.4f}; "
          f"weights in {args.out}/best.safetensors")
    return 0


def cmd_search(args) -> int:
    from .devices import resolve_device
    from .search.search import search

    config = job_config_from_args(args, "search")
    _check_run_out(args.out, config.data)
    resolve_device(config.device)
    summary = _run_job(search(config, args.out, resume=args.resume), args.quiet)
    if not _is_main_rank():
        return 0
    print(f"genotype ({'early stop' if summary['stopped_early'] else 'all epochs'}, {summary['select']}): "
          f"{args.out}/genotype.json")
    print(json.dumps(summary["genotype"]))
    if summary["no_signal"]:
        print(f"warning: the derived cell carries no signal: {summary['no_signal_reason']}", file=sys.stderr)
    return 0


# -- model-info ----------------------------------------------------------------------------
def cmd_model_info(args) -> int:
    from .models import Genotype, model_info

    genotype = Genotype.load(args.genotype) if args.genotype else None
    info = model_info(args.model, genotype=genotype, blocks=args.blocks)
    if args.json:
        print(json.dumps(info))
    else:
        print(f"{args.model}: {info['params']:,} parameters, {info['gflops']:.2f} GFLOPs "
              "(conv multiply-accumulates + bias adds, one 320x320 2-channel input)")
    return 0


# -- export-onnx ---------------------------------------------------------------------------
def cmd_export_onnx(args) -> int:
    from .files import check_distinct, check_output_path, write_json
    from .models.export import export_onnx
    from .recon import load_network

    if len(args.size) > 2:
        raise InputError(None, f"--size takes N or H W, got {len(args.size)} numbers")
    height, width = args.size if len(args.size) == 2 else args.size * 2
    for path in (args.out, args.json):
        if path:
            check_output_path(path)
    if args.weights:
        from .models.weights import sidecar_path

        check_distinct([args.out, args.json], [args.weights, sidecar_path(args.weights)])
    else:
        check_distinct([args.out, args.json])
    model, weights = load_network(args.model, args.weights)
    report = export_onnx(model, args.out, height, width)
    report["weights"] = str(weights)
    if args.json:
        write_json(args.json, report)
    print(f"wrote {args.out} ({height}x{width}); onnxruntime vs PyTorch max abs difference "
          f"{report['max_abs_diff']:.1e}")
    return 0


# -- demo ----------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, quiet=args.quiet, tv_backend=args.tv_backend)
    return 0
