"""ONNX export of a trained model, data-consistency layers included, checked against PyTorch.

ONNX Runtime has no complex tensors at its inputs, so the exported graph takes the measured
k-space as two real channels::

    inputs:  x  (1, 2, H, W) float32  normalised zero-filled image (real, imaginary)
             k0 (1, 2, H, W) float32  measured centred k-space, same scale, zero off the mask
             mask (W,)       float32  0/1 column mask
    output:  (1, 2, H, W) float32     the reconstruction, normalised scale

The normalisation (``6 / max|zero-filled|``) stays outside, as in
:class:`backend.recon.NetworkReconstructor`. The graph is exported for one grid ``H x W`` (the
weights themselves work on any grid, so export once per grid), and its DC layers compute the
centred orthonormal 2-D DFT as products with the ``H x H`` and ``W x W`` DFT matrices
(:class:`MatrixDataConsistency`, entries computed in float64). Why not ONNX's ``DFT`` node:
exported through it, onnxruntime 1.32 matched PyTorch to 8e-6 on a 256x256 grid but only to
7e-4 on 320x320 (not a power of two); the matrix form is exact to float32 rounding on every grid
and costs ~4 H W (H + W) multiply-adds per DC layer.
Needs the optional packages ``onnx``, ``onnxscript`` and ``onnxruntime`` (``pip install
napari-nascsmri[onnx]``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..fft import complex_to_channels, fft2c
from ..files import atomic_path
from ..masks import make_mask
from .cascade import UnrolledCascade


def centred_dft_matrix(n: int) -> np.ndarray:
    """The ``n x n`` matrix of the centred orthonormal DFT (:func:`backend.fft.fft2c` per axis)."""
    eye = np.eye(n, dtype=np.complex128)
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(eye, axes=0), axis=0, norm="ortho"), axes=0)


class MatrixDataConsistency(nn.Module):
    """The DC layer (:class:`backend.dc.DataConsistency`) for one grid, in real arithmetic.

    ``forward(image (B, 2, H, W), k0 (B, 2, H, W), mask (W,))``: the same Eq. 7 with the FFTs
    written as matrix products, so that it exports to plain ``MatMul`` nodes.
    """

    def __init__(self, height: int, width: int, lam: float | None = None):
        super().__init__()
        self.lam = lam
        for name, n in (("h", height), ("w", width)):
            a = centred_dft_matrix(n)
            self.register_buffer(f"{name}_re", torch.from_numpy(a.real.astype(np.float32)))
            self.register_buffer(f"{name}_im", torch.from_numpy(a.imag.astype(np.float32)))

    @staticmethod
    def _rows(a_re, a_im, re, im):  # A @ X along H
        return a_re @ re - a_im @ im, a_re @ im + a_im @ re

    @staticmethod
    def _cols(b_re, b_im, re, im):  # X @ B^T along W
        return re @ b_re.T - im @ b_im.T, re @ b_im.T + im @ b_re.T

    def forward(self, image: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        re, im = image[:, 0], image[:, 1]
        re, im = self._rows(self.h_re, self.h_im, re, im)
        re, im = self._cols(self.w_re, self.w_im, re, im)
        m = mask.view(1, 1, -1)
        k0_re, k0_im = k0[:, 0], k0[:, 1]
        if self.lam is None:
            re, im = (1 - m) * re + m * k0_re, (1 - m) * im + m * k0_im
        else:
            re = (1 - m) * re + m * (re + self.lam * k0_re) / (1 + self.lam)
            im = (1 - m) * im + m * (im + self.lam * k0_im) / (1 + self.lam)
        # inverse: the matrices are unitary, A^-1 = conj(A)^T
        re, im = self._rows(self.h_re.T, -self.h_im.T, re, im)
        re, im = self._cols(self.w_re.T, -self.w_im.T, re, im)
        return torch.stack((re, im), 1)


class ChannelsKSpace(nn.Module):
    """``forward(x, k0 as (B, 2, H, W) channels, mask (W,))`` of a registry model on one grid."""

    def __init__(self, model: nn.Module, height: int, width: int):
        super().__init__()
        self.model = model
        self.cascade = isinstance(model, UnrolledCascade)
        if self.cascade:
            self.dc = MatrixDataConsistency(height, width, model.dc.lam)

    def forward(self, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.cascade:  # the U-net has no DC layer
            return self.model(x, None, mask)
        for stage in range(self.model.cascades):
            x = self.dc(self.model.recon[stage % len(self.model.recon)](x), k0, mask)
        return x


def example_inputs(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random complex image, 4x-masked and normalised as at inference, in the export layout."""
    g = torch.Generator().manual_seed(seed)
    image = torch.complex(torch.randn(1, height, width, generator=g), torch.randn(1, height, width, generator=g))
    from ..transforms import network_inputs

    mask = torch.from_numpy(make_mask("random", width, 4, seed=seed).lines.astype(np.float32))
    x, k0, _ = network_inputs(fft2c(image), mask)
    return x, complex_to_channels(k0), mask


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise InputError(None, f"ONNX export needs the optional packages onnx, onnxscript and onnxruntime "
                               f"(pip install 'napari-nascsmri[onnx]'): {err}") from None
    return onnxruntime


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for an exported model."""
    ort = _require_onnx()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        raise InputError(path, f"not a loadable ONNX model: {str(err).splitlines()[0]}") from None


def run_session(session, x: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, (x.numpy(), k0.numpy(), mask.numpy()))))[0]


#: Largest exported grid side: the exported DC layer holds two dense centred DFT matrices and
#: the network's activations at full resolution (at 1024 about 0.5 GB while exporting).
MAX_EXPORT_SIDE = 1024


def export_onnx(model: nn.Module, path: str | os.PathLike, height: int = 320, width: int = 320,
                tolerance: float = 1e-4) -> dict:
    """Export ``model`` (eval mode, float32, reference layout) for an ``H x W`` grid to ``path``.

    Runs the exported file in onnxruntime on :func:`example_inputs` and compares it with
    PyTorch; raises :class:`InputError` (and writes nothing) when the largest absolute
    difference exceeds ``tolerance``. Returns ``{"path", "height", "width", "max_abs_diff",
    "opset"}``.
    """
    if height < 8 or width < 8:
        raise InputError(None, f"grid {height}x{width} is too small to export (at least 8x8)")
    if height > MAX_EXPORT_SIDE or width > MAX_EXPORT_SIDE:
        raise InputError(None, f"grid {height}x{width} is too large to export (at most "
                               f"{MAX_EXPORT_SIDE}x{MAX_EXPORT_SIDE}: the graph holds dense DFT matrices)")
    _require_onnx()
    model = model.float().eval().to(memory_format=torch.contiguous_format)
    wrapper = ChannelsKSpace(model, height, width).eval()
    inputs = example_inputs(height, width)
    with torch.no_grad():  # the reference: the model itself, FFT-based DC
        expected = model(inputs[0], torch.complex(inputs[1][:, 0], inputs[1][:, 1]), inputs[2]).numpy()
    opset = 18
    with atomic_path(path) as tmp:
        onnx_path = Path(tmp).with_suffix(".onnx")  # the exporter wants an .onnx name
        try:
            torch.onnx.export(wrapper, inputs, str(onnx_path), dynamo=True, opset_version=opset,
                              input_names=["x", "k0", "mask"], output_names=["reconstruction"],
                              external_data=False, verbose=False)
            got = run_session(onnx_session(onnx_path), *inputs)
            diff = float(np.abs(got - expected).max())
            if not diff <= tolerance:
                raise InputError(path, f"onnxruntime output differs from PyTorch by {diff:.2e} (> {tolerance:g})")
            os.replace(onnx_path, tmp)
        finally:
            onnx_path.unlink(missing_ok=True)
    return {"path": str(path), "height": height, "width": width, "max_abs_diff": diff, "opset": opset}
