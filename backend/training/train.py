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
from ..errors import InputError
from ..models import save_weights
from ..runfiles import BEST_WEIGHTS, LAST_WEIGHTS
from ..models.registry import build_from_config, model_config_of
from ..models.training_plan import prepare_for_training
from .data import EpochBatches, SliceIndex
from .distributed import mean, wrap
from .epochs import run_epochs
from .loop import adam, config_dict, opened_run, to_device, training_loss, validate
from ..runfiles import EpochRecord, StepRecord
from .runs import RunEvent

STEP_EVENT_EVERY = 10  # steps between step events written to events.jsonl


def build_for_training(config: TrainConfig, init: bool = True) -> torch.nn.Module:
    """The architecture a training config describes (seeded initialisation, then the tensors of
    ``config.init_weights`` when it names a file and ``init``), through the registry."""
    torch.manual_seed(config.seed)
    model = build_from_config(model_config_of(config))
    if init and config.init_weights is not None:
        model.load_state_dict(initial_weights(config))
    return model


def initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The state dict of ``config.init_weights`` (read as ``reconstruct --weights`` reads a
    file: safetensors, no unpickling of untrusted data), an :class:`InputError` naming the file
    unless its architecture is the one ``config`` trains."""
    from ..models.weights import load_model

    ours = model_config_of(config)
    model, _ = load_model(config.init_weights)
    theirs = model.config
    if theirs != ours:
        def describe(c):
            return ", ".join(f"{k} {v}" for k, v in c.to_dict().items() if v is not None and k != "genotype") + (
                "" if c.genotype is None else f", genotype {c.genotype.to_dict()['nodes']}")

        raise InputError(config.init_weights, f"these weights are for another architecture ({describe(theirs)}) "
                                              f"than the one trained ({describe(ours)})")
    return model.state_dict()  # load_state_dict copies them into the model being trained


def _dataset_provenance(data: str) -> dict:
    manifest = Path(data) / "dataset.json"
    if manifest.exists():
        return {k: v.get("licence") for k, v in json.loads(manifest.read_text()).get("sources", {}).items()}
    return {}


class _TrainJob:
    """One training run's steps and epoch ends for :func:`backend.training.epochs.run_epochs`."""

    def __init__(self, config, run, model, net, optimiser, epoch_batches, val_files, device, dist, history, best):
        self.config, self.run, self.model, self.net, self.optimiser = config, run, model, net, optimiser
        self.epoch_batches, self.val_files, self.device, self.dist = epoch_batches, val_files, device, dist
        self.history, self.best = history, best
        self.epochs, self.steps = config.epochs, len(epoch_batches(0))
        self.lr = config.lr
        self.meta_base = {"training": config_dict(config), "data_licences": _dataset_provenance(config.data),
                          "normalisation": "6 / max|zero-filled| per slice"}

    def finished(self) -> bool:
        return False

    def begin_epoch(self, epoch: int) -> None:
        c = self.config
        self.lr = c.lr * (c.lr_drop_factor if epoch >= c.epochs // 2 else 1.0)
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr
        self.net.train()

    def batches(self, epoch: int):
        return self.epoch_batches(epoch, self.dist.rank)

    def step(self, epoch: int, step: int, batch) -> tuple[dict, str]:
        c = self.config
        loss = training_loss(self.net, to_device(batch, self.device, c.channels_last), self.device, c.amp,
                             c.loss, c.ssim_weight)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        value = float(loss.detach())
        return StepRecord({"loss": value}, self.lr).to_json(), f"epoch {epoch + 1}/{c.epochs} loss {value:.4f}"

    def end_epoch(self, epoch: int, steps: list[dict], started: float) -> tuple[dict, str]:
        c, dist, model = self.config, self.dist, self.model
        train_loss = mean(sum(s["loss"] for s in steps) / len(steps), dist)
        execution = "fast" if c.channels_last and self.device.type == "cpu" else "reference"
        val = validate(model, self.val_files, c.accelerations, self.device, execution) if dist.is_main else {}
        record = EpochRecord(epoch, self.lr, time.time() - started, {"train_loss": train_loss}, val).to_json()
        self.history.append(record)
        if dist.is_main:
            meta = {**self.meta_base, "epoch": epoch, "validation": val}
            save_weights(model, self.run.path / LAST_WEIGHTS, meta)
            if self.best is None or val["psnr"] > self.best["psnr"]:
                self.best = {"epoch": epoch, "psnr": val["psnr"], "ssim": val["ssim"]}
                save_weights(model, self.run.path / BEST_WEIGHTS, meta)
        self.run.save_checkpoint({"model": model.state_dict(), "optimiser": self.optimiser.state_dict(),
                                  "epoch": epoch, "history": self.history, "best": self.best})
        self.run.write_history(self.history)
        msg = f"epoch {epoch + 1}/{c.epochs}: loss {train_loss:.4f}"
        if val:
            msg += f", val PSNR {val['psnr']:.2f} dB (best {self.best['psnr']:.2f})"
        return record, msg


def train(config: TrainConfig, out: str, resume: bool = False) -> Generator[RunEvent, None, dict]:
    def read_data():
        return SliceIndex(dataset_files(config.data, "train")), dataset_files(config.data, "val")[: config.val_volumes]

    with opened_run("train", config, out, resume, read_data) as (run, device, dist, (train_index, val_files)):
        state = run.load_checkpoint() if resume else None
        model = build_for_training(config, init=state is None).to(device)  # a checkpoint holds the weights
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimiser = adam(model.parameters(), config.lr)
        start, history, best = 0, [], None
        if state is not None:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            start, history, best = state["epoch"] + 1, state["history"], state["best"]
        # NasN on the CPU trains through its training plan (same parameters, same function)
        net = wrap(prepare_for_training(model, device), dist, device)
        if config.coils and dist.is_main:  # validation on 8-coil versions of the volumes (the benchmark's)
            from ..benchmark import build_cases

            val_files = [path for _, path in build_cases(val_files, run.path / "val_coils", ["multicoil"])]

        def epoch_batches(epoch: int, rank: int = 0) -> EpochBatches:
            return EpochBatches(train_index, seed=config.seed, epoch=epoch, batch_size=config.batch_size,
                                crop=config.crop, accelerations=config.accelerations,
                                phase_prob=config.phase_prob, steps=config.steps_per_epoch,
                                rank=rank, world=dist.world, augmentation=config.augmentation(),
                                aspects=config.aspects if config.augment else (1.0,),
                                mask_kinds=config.mask_kinds if config.augment else None,
                                coils=config.coils, coil_snr_db=config.coil_snr_db)

        job = _TrainJob(config, run, model, net, optimiser, epoch_batches, val_files, device, dist, history, best)
        yield run.emit(RunEvent("start", start * job.steps, job.epochs * job.steps,
                                f"{config.model}: epoch {start + 1}/{config.epochs}",
                                start, {"device": str(device), "world": dist.world, "resumed": state is not None}))
        yield from run_epochs(run, job, start, STEP_EVENT_EVERY)
        best, total = job.best, job.epochs * job.steps
        summary = {"best": best, "epochs": config.epochs, "out": str(run.path)}
        yield run.emit(RunEvent("done", total, total, "training finished", config.epochs - 1, summary))
        return summary
