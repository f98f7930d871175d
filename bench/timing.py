"""What the CPU benchmarks share: a seeded test slice and interleaved timing rounds."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from backend.masks import make_mask
from backend.transforms import network_inputs


def random_slice(size: int, image_seed: int = 0, mask_seed: int = 0):
    """Network inputs ``(x, k0, mask)`` of one random complex ``size x size`` image at 4x
    (random mask), normalised as ``nascsmri reconstruct`` does."""
    g = torch.Generator().manual_seed(image_seed)
    image = torch.complex(torch.randn(1, size, size, generator=g), torch.randn(1, size, size, generator=g))
    mask = torch.from_numpy(make_mask("random", size, 4, seed=mask_seed).lines.astype("float32"))
    x, k0, _ = network_inputs(torch.fft.fft2(image, norm="ortho"), mask)
    return x, k0, mask


def interleaved_times(models: list, inputs, rounds: int, warmup: int = 1,
                      on_round: Callable[[int, list[float]], None] | None = None):
    """Each model's output on ``inputs`` and its call times, taken in ``rounds`` rounds of one
    call per model in turn (so that a machine slowing down or speeding up affects every model
    alike), after ``warmup`` untimed rounds. ``on_round(r, times of round r)`` reports progress."""
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        outputs = [model(*inputs) for model in models]
        for _ in range(warmup):
            for model in models:
                model(*inputs)
        for r in range(rounds):
            for i, model in enumerate(models):
                start = time.perf_counter()
                model(*inputs)
                times[i].append(time.perf_counter() - start)
            if on_round is not None:
                on_round(r, [t[-1] for t in times])
    return outputs, times
