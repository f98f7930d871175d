"""A trained network run on multi-coil k-space (issue #21).

The reconstruction modules of a cascade (NasN, DCCNN, MoDL, RDN) work on one complex image; only
the data consistency knows about the measurement. With coil sensitivities the cascade's DC layer
becomes MoDL's conjugate-gradient SENSE solve (:func:`backend.dc.sense_cg_consistency`; a model
with a finite DC weight ``lambda`` uses ``mu = 1 / lambda``, the noise-free ones
:data:`SENSE_MU`), followed by zeroing the pixels no coil reaches (the SENSE model has no image
there; the networks' biases would otherwise pile up in that unconstrained background), and the
input is the coil-combined zero-filled image (:func:`backend.transforms.multicoil_network_inputs`),
so weights trained on single-coil data run unchanged. An image-to-image network without DC (U-net) maps the coil-combined zero-filled
image. Works on the reference module and on the fast plans (anything with ``recon``,
``cascades`` and ``dc``).
"""

from __future__ import annotations

import torch
from torch import nn

from ..dc import COVERAGE_EPS, sense_cg_consistency
from ..fft import channels_to_complex, complex_to_channels

#: ``mu`` of the SENSE solve for noise-free cascades and its CG iterations. Chosen on validation
#: files (2 files x 3 slices of the ``multicoil`` benchmark cases, shipped NasN, ESPIRiT maps;
#: mean PSNR over 4x and 8x, session 8): mu 0.03 / 0.01 / 0.003 gave 32.8 / 33.2 / 32.8 dB; 50
#: iterations instead of 30 changed nothing at 0.01.
SENSE_MU = 0.01
SENSE_CG_ITERATIONS = 30


def is_cascade(model: nn.Module) -> bool:
    """True for an unrolled cascade (reference or fast plan): modules + DC per stage."""
    return all(hasattr(model, name) for name in ("recon", "cascades", "dc"))


def run_multicoil(model: nn.Module, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                  maps: torch.Tensor, apply=None) -> torch.Tensor:
    """The network's output ``(B, 2, H, W)`` for the coil-combined zero-filled image ``x``, the
    measured coil k-space ``k0`` ``(B, C, H, W)`` (same scale as ``x``), the column ``mask`` and
    the sensitivities ``maps`` ``(B, C, H, W)``. ``apply(module, x)`` runs one stage's module
    (default ``module(x)``; the search supernet passes its mixing weights)."""
    if not is_cascade(model):
        return model(x)
    lam = getattr(model.dc, "lam", None)
    mu = SENSE_MU if lam is None else 1.0 / lam
    covered = ((maps.abs() ** 2).sum(1) > COVERAGE_EPS).to(x.dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    for stage in range(model.cascades):
        module = model.recon[stage % len(model.recon)]
        y = module(x) if apply is None else apply(module, x)
        z = sense_cg_consistency(channels_to_complex(y), k0, mask, maps, mu, SENSE_CG_ITERATIONS) * covered
        x = complex_to_channels(z).to(y.dtype).contiguous(memory_format=torch.channels_last)
    return x
