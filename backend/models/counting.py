"""Parameter and FLOP counts with the paper's conventions (REFERENCE section 3, paper 4.2.3).

* parameters: learnable tensors, each counted once (shared weights of MoDL / RDN recursion
  count once);
* "FLOPs": multiply-accumulates of every convolution for one 2-channel ``H x W`` input (the
  paper: 320 x 320), plus one add per output element for a bias, counted every time a conv
  runs (recursions and shared modules count every time). Per conv output element:
  ``in_channels / groups * kh * kw`` MACs. Nothing else is counted: ReLU, normalisation,
  pooling, up-sampling, the residual and node additions, and the DC layer (FFTs) are free.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .registry import build_model

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def count_params(model: nn.Module) -> int:
    """Number of learnable parameters, shared tensors once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _conv_macs(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> int:
    kernel = module.weight.shape[2] * module.weight.shape[3]
    if isinstance(module, nn.ConvTranspose2d):
        # every input element is scattered to out_channels / groups * kh * kw outputs
        macs = inputs[0].numel() * (module.out_channels // module.groups) * kernel
    else:
        macs = output.numel() * (module.in_channels // module.groups) * kernel
    if module.bias is not None:
        macs += output.numel()
    return macs


def count_macs(model: nn.Module, H: int = 320, W: int = 320) -> int:
    """Conv multiply-accumulates (+ bias adds) of ``model`` for one ``(1, 2, H, W)`` input.

    The model runs once on the ``meta`` device (shapes only, no arithmetic, so 60 G MAC
    networks are counted instantly); a model with real weights is copied first and left
    untouched. ``model`` must take ``forward(x, k0, mask)`` as every registry model does.
    """
    if any(p.device.type != "meta" for p in model.parameters()):
        model = copy.deepcopy(model).to("meta")
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONVS)]
    try:
        x = torch.zeros(1, 2, H, W, device="meta")
        k0 = torch.zeros(1, H, W, dtype=torch.complex64, device="meta")
        mask = torch.ones(W, device="meta")
        with torch.no_grad():
            model(x, k0, mask)
    finally:
        for handle in handles:
            handle.remove()
    return total


def model_info(name: str, genotype: Any = None, blocks: int | None = None,
               **build_options: Any) -> dict[str, float | int]:
    """``{"params": int, "gflops": float}`` of a registry model, gflops = MACs / 1e9 at
    320 x 320. Extra keyword options go to :func:`backend.models.build_model`. The model is
    built on the ``meta`` device, so no memory is allocated and no weights are initialised."""
    with torch.device("meta"):
        model = build_model(name, genotype=genotype, blocks=blocks, **build_options)
    return {"params": count_params(model), "gflops": count_macs(model, 320, 320) / 1e9}
