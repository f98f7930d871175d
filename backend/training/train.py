"""Retraining a network (NasN from a genotype, or a baseline) on a prepared dataset.

``train(config, out, resume)`` is a generator of :class:`~backend.training.runs.RunEvent`
(one per step, one per epoch) returning a summary dict. Per epoch it validates on whole
volumes at 4x and 8x with fixed masks, writes ``last.safetensors`` and, when validation PSNR
improves, ``best.safetensors`` (each with its JSON sidecar), then the resumable
``checkpoint.pt``. ``resume=True`` continues after the last completed epoch and produces the
same weights as an uninterrupted run (data and masks depend only on seed, epoch and index).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Generator

import torch

from ..config import TrainConfig
from ..datasets import dataset_files
from ..models import Genotype, build_model, save_weights
from ..models.genotype import default_genotype
from ..models.training_plan import prepare_for_training
from .data import EpochBatches, SliceIndex
from .distributed import mean, teardown, wrap
from .loop import config_dict, prepare_device, to_device, training_loss, validate
from .runs import RunEvent, RunFolder

STEP_EVENT_EVERY = 10  # steps between step events written to events.jsonl


def build_for_training(config: TrainConfig) -> torch.nn.Module:
    """The architecture a training config describes (seeded initialisation)."""
    torch.manual_seed(config.seed)
    if config.model == "nasn":
        genotype = Genotype.load(config.genotype) if config.genotype else default_genotype()
        return build_model("nasn", genotype=genotype, channels=config.channels, cells=config.cells,
                           cascades=config.cascades)
    if config.model == "unet":
        return build_model("unet", channels=config.channels)
    return build_model(config.model, blocks=config.blocks, channels=config.channels, cascades=config.cascades)


def _dataset_provenance(data: str) -> dict:
    manifest = Path(data) / "dataset.json"
    if manifest.exists():
        return {k: v.get("licence") for k, v in json.loads(manifest.read_text()).get("sources", {}).items()}
    return {}


def train(config: TrainConfig, out: str, resume: bool = False) -> Generator[RunEvent, None, dict]:
    device, dist = prepare_device(config.device)
    # the data is checked before the run folder is made: a bad --data leaves nothing behind
    try:
        train_index = SliceIndex(dataset_files(config.data, "train"))
        val_files = dataset_files(config.data, "val")[: config.val_volumes]
        run = RunFolder(out, "train", config_dict(config), resume, writer=dist.is_main)
        with run.recording():
            model = build_for_training(config).to(device)
            if config.channels_last:
                model = model.to(memory_format=torch.channels_last)
            optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
            start, history, best = 0, [], None
            state = run.load_checkpoint() if resume else None
            if state is not None:
                model.load_state_dict(state["model"])
                optimiser.load_state_dict(state["optimiser"])
                start, history, best = state["epoch"] + 1, state["history"], state["best"]
            # NasN on the CPU trains through its training plan (same parameters, same function)
            net = wrap(prepare_for_training(model, device), dist, device)
            def epoch_batches(epoch: int, rank: int = 0) -> EpochBatches:
                return EpochBatches(train_index, seed=config.seed, epoch=epoch, batch_size=config.batch_size,
                                    crop=config.crop, accelerations=config.accelerations,
                                    phase_prob=config.phase_prob, steps=config.steps_per_epoch,
                                    rank=rank, world=dist.world, augmentation=config.augmentation(),
                                    aspects=config.aspects if config.augment else (1.0,),
                                    mask_kinds=config.mask_kinds if config.augment else None)

            steps = len(epoch_batches(0))
            total = config.epochs * steps
            yield run.emit(RunEvent("start", start * steps, total, f"{config.model}: epoch {start + 1}/{config.epochs}",
                                    start, {"device": str(device), "world": dist.world, "resumed": state is not None}))
            meta_base = {"training": config_dict(config), "data_licences": _dataset_provenance(config.data),
                         "normalisation": "6 / max|zero-filled| per slice"}
            for epoch in range(start, config.epochs):
                lr = config.lr * (config.lr_drop_factor if epoch >= config.epochs // 2 else 1.0)
                for group in optimiser.param_groups:
                    group["lr"] = lr
                net.train()
                t0, losses = time.time(), []
                for step, batch in enumerate(epoch_batches(epoch, dist.rank)):
                    loss = training_loss(net, to_device(batch, device, config.channels_last), device, config.amp,
                                         config.loss, config.ssim_weight)
                    optimiser.zero_grad(set_to_none=True)
                    loss.backward()
                    optimiser.step()
                    losses.append(float(loss.detach()))
                    event = RunEvent("step", epoch * steps + step + 1, total,
                                     f"epoch {epoch + 1}/{config.epochs} loss {losses[-1]:.4f}", epoch,
                                     {"loss": losses[-1], "lr": lr})
                    if (step + 1) % STEP_EVENT_EVERY == 0:
                        run.emit(event)
                    yield event
                train_loss = mean(sum(losses) / len(losses), dist)
                val = validate(model, val_files, config.accelerations, device) if dist.is_main else {}
                record = {"epoch": epoch, "train_loss": train_loss, "lr": lr, "seconds": time.time() - t0, **val}
                history.append(record)
                if dist.is_main:
                    meta = {**meta_base, "epoch": epoch, "validation": val}
                    save_weights(model, run.path / "last.safetensors", meta)
                    if best is None or val["psnr"] > best["psnr"]:
                        best = {"epoch": epoch, "psnr": val["psnr"], "ssim": val["ssim"]}
                        save_weights(model, run.path / "best.safetensors", meta)
                run.save_checkpoint({"model": model.state_dict(), "optimiser": optimiser.state_dict(),
                                     "epoch": epoch, "history": history, "best": best})
                run.write_history(history)
                msg = f"epoch {epoch + 1}/{config.epochs}: loss {train_loss:.4f}"
                if val:
                    msg += f", val PSNR {val['psnr']:.2f} dB (best {best['psnr']:.2f})"
                yield run.emit(RunEvent("epoch", (epoch + 1) * steps, total, msg, epoch, record))
            summary = {"best": best, "epochs": config.epochs, "out": str(run.path)}
            yield run.emit(RunEvent("done", total, total, "training finished", config.epochs - 1, summary))
            return summary
    finally:
        teardown(dist)
