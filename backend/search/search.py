"""Differentiable search (first order) of the cell inside the DC cascade.

The training files are split by file into two disjoint halves, ``train_w`` and ``train_alpha``.
Every step: (1) an SGD step of the network weights on a ``train_w`` batch, (2) a step of the
architecture parameters on a ``train_alpha`` batch by the method's
:class:`backend.search.architect.Architect` (DARTS: Adam on the alphas with the authors'
settings, the defaults of :class:`backend.config.SearchConfig`; PC-DARTS, DrNAS, beta-DARTS).
After every epoch the genotype is derived and the per-edge entropy and margin recorded
(:func:`backend.search.selection.diagnostics`); the search stops when the genotype has not
changed for ``patience`` epochs. At the end the cell is the argmax one or, with
``select="perturb"``, the one perturbation-based selection gives.

Files written in the run folder (besides those of :mod:`backend.training.runs`):
``genotype.json`` (after every epoch; final at the end), ``alphas.json`` (softmax weights per
epoch), ``cell.png``, ``alphas.png``, ``signal.png`` (per-edge margin and entropy per epoch)
and, with ``select="perturb"``, ``selection.json`` (the measured loss increases).
"""

from __future__ import annotations

import math
import time
from typing import Generator

import torch

from ..config import SearchConfig
from ..datasets import dataset_files
from ..files import write_json
from ..models import SPACES, Genotype
from ..runfiles import ALPHAS, ALPHAS_IMAGE, CELL_IMAGE, GENOTYPE, SELECTION, SIGNAL_IMAGE, EpochRecord, SearchEpoch, StepRecord
from ..training.data import EpochBatches, SliceIndex, split_files
from ..training.distributed import mean, unwrap, wrap
from ..training.epochs import run_epochs
from ..training.loop import l1_loss, opened_run, to_device, validate
from ..training.runs import RunEvent, RunFolder
from .architect import make_architect
from .plots import draw_alphas, draw_cell, draw_signal
from .selection import diagnostics, perturb_select
from .supernet import SuperNet

VAL_VOLUMES = 2
STEP_EVENT_EVERY = 5


def cosine_lr(config: SearchConfig, epoch: int) -> float:
    """Cosine annealing from ``w_lr`` to ``w_lr_min`` over the epochs (per epoch)."""
    t = epoch / max(1, config.epochs)
    return config.w_lr_min + 0.5 * (config.w_lr - config.w_lr_min) * (1 + math.cos(math.pi * t))


def _step_seed(config: SearchConfig, epoch: int, step: int) -> int:
    """Torch's global seed for one step: DrNAS' Dirichlet samples depend on (seed, epoch, step)
    only, so a resumed search draws what an uninterrupted one draws."""
    return (config.seed * 1_000_003 + epoch * 10_007 + step) % 2**63


class _SearchJob:
    """One search's alternating steps and epoch ends for :func:`backend.training.epochs.run_epochs`."""

    def __init__(self, config, run, model, net, w_opt, architect, steps, history, stable, device, dist, batches,
                 val_files):
        self.config, self.run, self.model, self.net, self.w_opt = config, run, model, net, w_opt
        self.architect, self.steps, self.history, self.stable = architect, steps, history, stable
        self.device, self.dist, self._batches, self.val_files = device, dist, batches, val_files
        self.epochs = config.epochs
        self.genotype = model.genotype(config.max_skip)
        self.alpha_epochs = max(1, config.epochs - config.warmup_epochs)
        self.lr, self.warm = config.w_lr, False

    def finished(self) -> bool:
        c = self.config
        return c.patience is not None and self.stable >= c.patience and len(self.history) >= c.min_epochs

    def begin_epoch(self, epoch: int) -> None:
        c = self.config
        self.lr = cosine_lr(c, epoch)
        for group in self.w_opt.param_groups:
            group["lr"] = self.lr
        self.net.train()
        self.warm = epoch < c.warmup_epochs
        self.architect.progress = 0.0 if self.warm else (epoch - c.warmup_epochs + 1) / self.alpha_epochs

    def batches(self, epoch: int):
        return self._batches(epoch)

    def step(self, epoch: int, step: int, pair) -> tuple[dict, str]:
        c, model, device = self.config, self.model, self.device
        bw, ba = pair
        torch.manual_seed(_step_seed(c, epoch, step))
        loss_w = l1_loss(self.net, to_device(bw, device, c.channels_last), device, c.amp)
        self.w_opt.zero_grad(set_to_none=True)
        self.architect.optimiser.zero_grad(set_to_none=True)
        loss_w.backward()
        torch.nn.utils.clip_grad_norm_(model.weight_parameters(), c.grad_clip)
        self.w_opt.step()
        loss_w = float(loss_w.detach())
        loss_a = None
        if not self.warm:  # during the warm-up only the weights learn
            loss_a = self.architect.step(self.net, to_device(ba, device, c.channels_last), device, self.w_opt)
        message = f"epoch {epoch + 1}/{c.epochs} w {loss_w:.4f}" + ("" if loss_a is None else f" a {loss_a:.4f}")
        return StepRecord({"loss_w": loss_w, "loss_alpha": loss_a}, self.lr).to_json(), message

    def end_epoch(self, epoch: int, steps: list[dict], started: float) -> tuple[dict, str]:
        c, model, dist, warm = self.config, self.model, self.dist, self.warm
        w_losses = [s["loss_w"] for s in steps]
        a_losses = [s["loss_alpha"] for s in steps if s["loss_alpha"] is not None]
        in_sync = alphas_in_sync(model, dist)
        new = model.genotype(c.max_skip)
        self.stable = 0 if warm else (self.stable + 1 if new == self.genotype else 0)
        self.genotype = new
        val = validate(unwrap(self.net), self.val_files, c.accelerations, self.device) if dist.is_main else {}
        alpha_steps = sum(self.steps for h in self.history if not h["warmup"]) + (0 if warm else self.steps)
        diag = diagnostics(model.derivation_weights(), c.space, new, c.signal_margin, alpha_steps)
        losses = {"loss_w": mean(sum(w_losses) / len(w_losses), dist),
                  "loss_alpha": mean(sum(a_losses) / len(a_losses), dist) if a_losses else None}
        state = SearchEpoch(warmup=warm, stable_epochs=self.stable, alphas_in_sync=in_sync, genotype=new.to_dict(),
                            genotype_uncapped=model.genotype(None).to_dict(), alphas=model.op_weights().tolist(),
                            **diag)
        record = EpochRecord(epoch, self.lr, time.time() - started, losses, val, state).to_json()
        self.history.append(record)
        if dist.is_main:
            _write_results(self.run, c, new, self.history)
        self.run.save_checkpoint({"model": model.state_dict(), "w_opt": self.w_opt.state_dict(),
                                  "a_opt": self.architect.state_dict(), "epoch": epoch, "history": self.history,
                                  "stable": self.stable})
        self.run.write_history(self.history)
        msg = (f"epoch {epoch + 1}/{c.epochs}: w-loss {record['loss_w']:.4f}, "
               + ("weights-only warm-up" if warm else
                  f"alpha-loss {record['loss_alpha']:.4f}, genotype stable for {self.stable} epoch(s), "
                  f"chosen edges' margins {min(diag['chosen_margin']):.3f}-{max(diag['chosen_margin']):.3f}"))
        if val:
            msg += f", supernet val PSNR {val['psnr']:.2f} dB"
        return record, msg


def search(config: SearchConfig, out: str, resume: bool = False) -> Generator[RunEvent, None, dict]:
    def read_data():
        w_files, a_files = split_files(dataset_files(config.data, "train"), config.seed)
        return SliceIndex(w_files), SliceIndex(a_files), dataset_files(config.data, "val")[:VAL_VOLUMES]

    with opened_run("search", config, out, resume, read_data) as (run, device, dist, (w_index, a_index, val_files)):
        torch.manual_seed(config.seed)
        model = SuperNet(config.space, config.nodes, config.channels, config.cells, config.cascades,
                         config.alpha_init, config.method, config.partial_channels).to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        w_opt = torch.optim.SGD(model.weight_parameters(), lr=config.w_lr, momentum=config.w_momentum,
                                weight_decay=config.w_weight_decay)
        architect = make_architect(model, config)
        start, history, stable = 0, [], 0
        state = run.load_checkpoint() if resume else None
        if state is not None:
            model.load_state_dict(state["model"])
            w_opt.load_state_dict(state["w_opt"])
            architect.load_state_dict(state["a_opt"])
            start, history, stable = state["epoch"] + 1, state["history"], state["stable"]
        net = wrap(model, dist, device)

        if config.coils and dist.is_main:  # validation on 8-coil versions of the volumes (the benchmark's)
            from ..benchmark import build_cases

            val_files = [path for _, path in build_cases(val_files, run.path / "val_coils", ["multicoil"])]

        def batches(index, epoch, stream, steps=config.steps_per_epoch):
            return EpochBatches(index, seed=config.seed, epoch=epoch, batch_size=config.batch_size,
                                crop=config.crop, accelerations=config.accelerations,
                                phase_prob=config.phase_prob, steps=steps,
                                rank=dist.rank, world=dist.world, stream=stream,
                                coils=config.coils, coil_snr_db=config.coil_snr_db)

        steps = min(len(batches(w_index, 0, 0)), len(batches(a_index, 0, 1)))
        total = config.epochs * steps
        yield run.emit(RunEvent("start", start * steps, total,
                                f"search space {config.space}, {config.nodes} nodes, {config.method}: "
                                f"epoch {start + 1}/{config.epochs}",
                                start, {"device": str(device), "world": dist.world, "resumed": state is not None,
                                        "method": config.method}))
        job = _SearchJob(config, run, model, net, w_opt, architect, steps, history, stable, device, dist,
                         lambda epoch: zip(batches(w_index, epoch, 0), batches(a_index, epoch, 1)), val_files)
        yield from run_epochs(run, job, start, STEP_EVENT_EVERY)
        genotype = job.genotype
        stopped_early = job.finished() and len(history) < config.epochs
        selection = {}
        if config.select == "perturb" and history:
            val_batches = [to_device(b, device, config.channels_last) for b in batches(a_index, 10**6, 2, steps=4)]
            genotype, selection = perturb_select(model, val_batches, device, config.amp)
        signal = history[-1] if history else {"no_signal": True, "no_signal_reason": "no epoch ran"}
        if dist.is_main and history:
            _write_results(run, config, genotype, history, selection)
        summary = {"genotype": genotype.to_dict(), "epochs_run": len(history), "stopped_early": stopped_early,
                   "out": str(run.path), "select": config.select, "no_signal": signal["no_signal"],
                   "no_signal_reason": signal["no_signal_reason"]}
        message = (f"search finished after {len(history)} epochs"
                   + (" (genotype stable: early stop)" if stopped_early else "")
                   + (f"; WARNING: the derived cell carries no signal: {signal['no_signal_reason']}"
                      if signal["no_signal"] else ""))
        yield run.emit(RunEvent("done", total, total, message, len(history) - 1, summary))
        return summary


def reselect(run_dir: str, device: str = "cpu") -> tuple[Genotype, dict]:
    """Perturbation-based selection applied afterwards to a finished argmax search: the
    supernet of ``RUN/checkpoint.pt`` and the validation batches a ``select="perturb"`` search
    would use (same seed, same ``train_alpha`` half). Nothing in the run folder is changed; the
    caller decides where the result goes."""
    from ..runfiles import config_from_run, run_config

    saved = run_config(run_dir)
    if saved is None:
        raise FileNotFoundError(f"{run_dir}: no config.json")
    config = config_from_run(SearchConfig, saved)
    state = torch.load(f"{run_dir}/checkpoint.pt", map_location="cpu", weights_only=True)
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    model = SuperNet(config.space, config.nodes, config.channels, config.cells, config.cascades, config.alpha_init,
                     config.method, config.partial_channels).to(dev)
    model.load_state_dict(state["model"])
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    _, a_files = split_files(dataset_files(config.data, "train"), config.seed)
    val = EpochBatches(SliceIndex(a_files), seed=config.seed, epoch=10**6, batch_size=config.batch_size,
                       crop=config.crop, accelerations=config.accelerations, phase_prob=config.phase_prob, steps=4,
                       rank=0, world=1, stream=2, coils=config.coils, coil_snr_db=config.coil_snr_db)
    batches = [to_device(b, dev, config.channels_last) for b in val]
    return perturb_select(model, batches, dev, config.amp)


def alphas_in_sync(model: SuperNet, dist) -> bool:
    """True when every rank holds the same alphas (always true in one process)."""
    if not dist.enabled:
        return True
    import torch.distributed as tdist

    gathered = [torch.zeros_like(model.alphas.detach()) for _ in range(dist.world)]
    tdist.all_gather(gathered, model.alphas.detach().contiguous())
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _write_results(run: RunFolder, config: SearchConfig, genotype: Genotype, history: list[dict],
                   selection: dict | None = None) -> None:
    genotype.save(run.path / GENOTYPE)
    if selection:
        write_json(run.path / SELECTION, {"select": config.select, **selection, "genotype": genotype.to_dict()})
    write_json(run.path / ALPHAS, {"space": config.space, "nodes": config.nodes,
                                          "ops": list(SPACES[config.space]),
                                          "epochs": [h["alphas"] for h in history]})
    draw_cell(genotype, run.path / CELL_IMAGE, f"searched cell (space {config.space}, epoch {len(history)})")
    draw_alphas([h["alphas"] for h in history], config.space, config.nodes, run.path / ALPHAS_IMAGE)
    draw_signal(history, config.signal_margin, run.path / SIGNAL_IMAGE)
