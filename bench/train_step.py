"""Benchmark: one training step of NasN and DCCNN-3 on the CPU, interleaved (issue #17).

    python bench/train_step.py [--rounds 20] [--warmup 3] [--batch 2] [--crop 128] [--threads N]
                               [--steps-per-round K]

One step = forward, L1 loss, zero_grad, backward, Adam step: what ``nascsmri train --preset
cpu`` does per step (batch 2, 128x128 crops, channels_last). Timed in rounds of one step per
model in turn, so that a machine slowing down or speeding up affects all alike; the ratio to
DCCNN-3 is taken per round and its median reported, with its range. With ``--steps-per-round
K`` each model runs K steps in a row per round and the round counts the median of steps 2..K:
a model's steady state, as in a training process (one step after another model's differs: on a
host whose memory bandwidth varied, session 19, NasN's ratio was 0.81-0.94 one step per round
and 1.01-1.05 in blocks of 6). Models (fresh
initialisation, seed 0, the shipped genotype; glibc's allocator tuned as ``train`` tunes it): NasN through its CPU training plan (what
``train`` uses, :mod:`backend.models.training_plan`), NasN's reference module, DCCNN-3, and the
search supernet of the ``cpu`` preset (16 channels, 2 cells, 64x64 crops) for one weight step
and one alpha step. Also checks that the plan's gradients equal the reference module's.

Writes ``bench/results/train_step_<cpu slug>[_<N>thread].json`` (the machine in the file name and inside,
so results of different CPUs stay side by side) and prints a table. Run it with nothing else
using the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from backend.config import SEARCH_PRESETS, SearchConfig, apply_preset
from backend.files import write_json
from backend.machine import describe
from backend.models import build_model
from backend.models.genotype import default_genotype
from backend.models.inference import tune_allocator
from backend.training.loop import adam
from backend.models.training_plan import prepare_for_training
from backend.search.supernet import SuperNet

RESULTS = Path(__file__).resolve().parent / "results"


def batch(size: int, n: int, seed: int = 0):
    """A training batch: normalised zero-filled input, k0, a 4x-ish column mask, the target."""
    g = torch.Generator().manual_seed(seed)
    image = torch.complex(torch.randn(n, size, size, generator=g), torch.randn(n, size, size, generator=g))
    mask = (torch.rand(n, size, generator=g) < 0.3).float()
    mask[:, size // 2 - 4: size // 2 + 4] = 1
    k0 = torch.fft.fftshift(torch.fft.fft2(image, norm="ortho"), dim=(-2, -1)) * mask[:, None, :]
    zf = torch.fft.ifft2(torch.fft.ifftshift(k0, dim=(-2, -1)), norm="ortho")
    scale = 6 / zf.abs().flatten(1).amax(1).view(-1, 1, 1)
    x = torch.stack([(zf * scale).real, (zf * scale).imag], 1).contiguous(memory_format=torch.channels_last)
    target = torch.stack([(image * scale).real, (image * scale).imag], 1)
    return x, k0 * scale, mask, target


class Trainer:
    """One model's step: ``net`` is what runs, ``model`` owns the parameters."""

    def __init__(self, name: str, model: torch.nn.Module, net: torch.nn.Module, data):
        self.name, self.model, self.net, self.data = name, model, net, data
        self.optimiser = adam(model.parameters(), 1e-4)  # what ``train`` uses

    def step(self) -> None:
        x, k0, mask, target = self.data
        loss = F.l1_loss(self.net(x, k0, mask), target)
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()


class SupernetTrainer(Trainer):
    """The search's alternating step: SGD on the weights, Adam on the alphas (two batches)."""

    def __init__(self, config: SearchConfig, data):
        torch.manual_seed(0)
        model = SuperNet(config.space, config.nodes, config.channels, config.cells, config.cascades).to(
            memory_format=torch.channels_last)
        super().__init__("supernet (search cpu preset)", model, model, data)
        self.w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9)
        self.a_opt = torch.optim.Adam(model.arch_parameters(), lr=3e-4)

    def step(self) -> None:
        x, k0, mask, target = self.data
        for opt in (self.w_opt, self.a_opt):
            loss = F.l1_loss(self.net(x, k0, mask), target)
            self.w_opt.zero_grad(set_to_none=True)
            self.a_opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def trainers(batch_size: int, crop: int) -> list[Trainer]:
    data = batch(crop, batch_size)
    out = []
    for name, plan in [("NasN (training plan)", True), ("NasN (reference module)", False)]:
        torch.manual_seed(0)
        model = build_model("nasn", genotype=default_genotype(), channels=32, cells=3, cascades=3)
        model = model.to(memory_format=torch.channels_last)
        out.append(Trainer(name, model, prepare_for_training(model, "cpu") if plan else model, data))
    torch.manual_seed(0)
    dccnn = build_model("dccnn", channels=32, cascades=3).to(memory_format=torch.channels_last)
    out.append(Trainer("DCCNN-3", dccnn, dccnn, data))
    search = apply_preset(SearchConfig(preset="cpu"), SEARCH_PRESETS)
    out.append(SupernetTrainer(search, batch(search.crop, search.batch_size, seed=1)))
    return out


def gradient_agreement(plan: Trainer, reference: Trainer, loss=F.l1_loss) -> float:
    """Relative difference ``|g_plan - g_ref| / |g_ref|`` of the two NasN variants' gradients on
    the same parameters and batch, all parameters as one vector (a per-tensor ratio is
    meaningless for the heads' biases, whose gradients are ~1e-9, rounding noise). Under the L1
    loss it also counts the outputs whose error changes sign between the two (float32 rounding
    of residuals near 0 flips their gradient): session 20's plan gave 5.6e-4 there and 5.6e-5
    under the squared error, against 9.4e-5 and 5.2e-5 for session 19's, outputs equal to 2.9e-7."""
    reference.model.load_state_dict(plan.model.state_dict())
    grads = []
    for t in (plan, reference):
        t.model.zero_grad(set_to_none=True)
        x, k0, mask, target = t.data
        loss(t.net(x, k0, mask), target).backward()
        grads.append([p.grad.detach().clone() for p in t.model.parameters()])
    a, b = (torch.cat([g.flatten() for g in gs]) for gs in grads)
    return ((a - b).norm() / b.norm()).item()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--steps-per-round", type=int, default=1,
                    help="consecutive steps of each model per round; with K > 1 a round's time is the median "
                         "of steps 2..K, each model's steady state as in a training process")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default: bench/results/train_step_<cpu>.json)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = tune_allocator()  # as ``nascsmri train`` and ``search`` do on the CPU
    machine = describe()
    models = trainers(args.batch, args.crop)
    agreement = gradient_agreement(models[0], models[1])
    agreement_mse = gradient_agreement(models[0], models[1], F.mse_loss)
    for _ in range(args.warmup):
        for m in models:
            m.step()
    times: list[list[float]] = [[] for _ in models]
    for r in range(args.rounds):
        for i, m in enumerate(models):
            steps = []
            for _ in range(max(args.steps_per_round, 1)):
                start = time.perf_counter()
                m.step()
                steps.append(time.perf_counter() - start)
            times[i].append(statistics.median(steps[1:]) if len(steps) > 1 else steps[0])
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{t[-1] * 1e3:.0f}" for t in times) + " ms", flush=True)
    base = times[2]
    rows = []
    for m, t in zip(models, times):
        ratios = [a / b for a, b in zip(t, base)]
        rows.append({"model": m.name, "median_ms": statistics.median(t) * 1e3, "min_ms": min(t) * 1e3,
                     "ratio_to_dccnn3_median": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)],
                     "times_s": t})
    report = {"benchmark": "train_step", "machine": machine, "batch": args.batch, "crop": args.crop,
              "rounds": args.rounds, "steps_per_round": args.steps_per_round, "warmup": args.warmup,
              "allocator_tuned": tuned, "gradient_rel_diff_plan_vs_reference": agreement,
              "gradient_rel_diff_plan_vs_reference_mse": agreement_mse,
              "note": "supernet step = one SGD weight step + one Adam alpha step at the search cpu preset",
              "rows": rows}
    # results of other thread counts sit beside the default run's (one file per CPU and count)
    suffix = f"_{args.threads}thread" if args.threads else ""
    out = args.out or RESULTS / f"train_step_{machine['slug']}{suffix}.json"
    write_json(out, report)
    print(f"\n{machine['cpu']} ({machine['family_model_stepping']}, {' '.join(machine['isa'])}), "
          f"{machine['torch_threads']} threads, torch {machine['torch']}; batch {args.batch}, {args.crop}x{args.crop}")
    print(f"{'model':32s} {'median ms':>10s} {'min ms':>8s} {'x DCCNN-3':>10s} {'range':>13s}")
    for row in rows:
        lo, hi = row["ratio_range"]
        print(f"{row['model']:32s} {row['median_ms']:10.1f} {row['min_ms']:8.1f} "
              f"{row['ratio_to_dccnn3_median']:10.2f} {lo:6.2f}-{hi:<6.2f}")
    print(f"plan vs reference gradients: relative difference {agreement:.1e} (L1 loss), {agreement_mse:.1e} "
          f"(squared error); written {out}")
    return report


if __name__ == "__main__":
    main()
