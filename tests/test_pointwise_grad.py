"""The 1x1 convolution backward of NasN's training plan (issue #17): ``kernels/pointwise_grad.c``
on each ISA path it has, :class:`PointwiseConv` and the head computed from its taps.

References: oneDNN's ``convolution_backward`` and ``threshold_backward`` in float64, and
``F.conv2d`` for the head.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.models.kernels import POINTWISE_GRAD_SOURCE, KernelError, build, fused_pointwise
from backend.models.kernels.gradients import PointwiseGrad, pointwise_grad
from backend.models.training_plan import PointwiseConv, _head

CC = shutil.which("cc")
CL = torch.channels_last
# native (AVX-512 or AVX2 where the CPU has them), the AVX2 path, and the plain C loops
ISA_FLAGS = {"native": (), "avx2": ("-mno-avx512f",), "plain": ("-mno-avx512f", "-mno-avx2", "-mno-fma")}


@pytest.fixture(scope="module", params=sorted(ISA_FLAGS))
def kernel(request, tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler")
    return PointwiseGrad(build(CC, ISA_FLAGS[request.param], tmp_path_factory.mktemp("pwg"),
                               source=POINTWISE_GRAD_SOURCE))


def _reference(x, grad, weight, mask):
    gx, gw = torch.ops.aten.convolution_backward(
        grad, x, weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, False])[:2]
    if mask:
        gx = torch.ops.aten.threshold_backward(gx, x, 0.0)
    return gx, gw


# channel counts on and off the vector widths; pixel counts on and off the blocks
@pytest.mark.parametrize("n,cin,cout,h,w", [(2, 32, 32, 16, 16), (1, 13, 5, 7, 9), (2, 48, 18, 11, 13),
                                            (1, 16, 96, 3, 5), (3, 7, 33, 1, 1)])
@pytest.mark.parametrize("mask", [False, True])
def test_gradients_match_onednn_in_float64(kernel, n, cin, cout, h, w, mask):
    g = torch.Generator().manual_seed(cin * 100 + cout + mask)
    x = torch.randn(n, cin, h, w, generator=g)
    if mask:
        x = torch.relu(x)  # a rectified input: about half its entries are zero
    x = x.contiguous(memory_format=CL)
    grad = torch.randn(n, cout, h, w, generator=g).contiguous(memory_format=CL)
    weight = torch.randn(cout, cin, 1, 1, generator=g)
    ref_x, ref_w = _reference(x.double(), grad.double(), weight.double(), mask)
    got_x, got_w = kernel.backward(x, grad, weight, mask=mask)
    assert got_x.shape == x.shape and got_x.is_contiguous(memory_format=CL) and got_w.shape == weight.shape
    np.testing.assert_allclose(got_x.double().numpy(), ref_x.numpy(), rtol=0, atol=1e-5 * ref_x.abs().max().item())
    np.testing.assert_allclose(got_w.double().numpy(), ref_w.numpy(), rtol=0, atol=1e-5 * ref_w.abs().max().item())
    if mask:  # exactly zero where the input was not positive
        assert (got_x[x == 0] == 0).all() and (got_x[x > 0] != 0).float().mean() > 0.9


@pytest.mark.parametrize("n,cin,cout,h,w", [(2, 32, 32, 16, 16), (1, 13, 5, 7, 9), (2, 48, 18, 11, 13)])
def test_mask_reads_an_unrectified_input_through_its_relu(kernel, n, cin, cout, h, w):
    """With ``mask`` and a raw input ``t`` (negative entries included), the gradients are those of
    ``conv2d(relu(t), weight)``: the weight's from ``relu(t)``, the input's masked by ``t > 0``."""
    g = torch.Generator().manual_seed(cin + cout)
    t = torch.randn(n, cin, h, w, generator=g).contiguous(memory_format=CL)
    grad = torch.randn(n, cout, h, w, generator=g).contiguous(memory_format=CL)
    weight = torch.randn(cout, cin, 1, 1, generator=g)
    leaves = [t.double().requires_grad_(), weight.double().requires_grad_()]
    ref_x, ref_w = torch.autograd.grad(F.conv2d(torch.relu(leaves[0]), leaves[1]), leaves, grad.double())
    got_x, got_w = kernel.backward(t, grad, weight, mask=True)
    np.testing.assert_allclose(got_x.double().numpy(), ref_x.numpy(), rtol=0, atol=1e-5 * ref_x.abs().max().item())
    np.testing.assert_allclose(got_w.double().numpy(), ref_w.numpy(), rtol=0, atol=1e-5 * ref_w.abs().max().item())


def test_result_independent_of_threads(kernel):
    x = torch.randn(2, 32, 17, 16).contiguous(memory_format=CL)
    grad = torch.randn(2, 32, 17, 16).contiguous(memory_format=CL)
    weight = torch.randn(32, 32, 1, 1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kernel.backward(x, grad, weight)
    finally:
        torch.set_num_threads(threads)
    two = kernel.backward(x, grad, weight)
    torch.testing.assert_close(one[0], two[0], rtol=0, atol=0)  # each pixel's sum in one thread
    torch.testing.assert_close(one[1], two[1], rtol=1e-6, atol=1e-6)


def test_refuses_what_it_cannot_do(kernel):
    x = torch.randn(1, 8, 4, 4).contiguous(memory_format=CL)
    grad = torch.randn(1, 4, 4, 4).contiguous(memory_format=CL)
    with pytest.raises(KernelError):
        kernel.backward(x.contiguous(), grad, torch.randn(4, 8, 1, 1))  # not channels last
    with pytest.raises(KernelError):
        kernel.backward(x, grad, torch.randn(4, 8, 3, 3))  # not 1x1
    with pytest.raises(KernelError):
        kernel.backward(x.double(), grad.double(), torch.randn(4, 8, 1, 1, dtype=torch.float64))


def test_function_passes_gradcheck_with_and_without_relu():
    g = torch.Generator().manual_seed(3)
    t = torch.randn(1, 5, 4, 3, dtype=torch.float64, generator=g).contiguous(memory_format=CL)
    t = t + 0.1 * t.sign()  # away from the ReLU's kink
    t.requires_grad_(True)
    weight = torch.randn(6, 5, 1, 1, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: PointwiseConv.apply(a, b, None), (t, weight))
    assert torch.autograd.gradcheck(lambda a, b: PointwiseConv.apply(a, b, torch.relu(a).detach()), (t, weight))


def test_function_in_float32_equals_conv_of_relu():
    g = torch.Generator().manual_seed(4)
    t = torch.randn(2, 32, 12, 10, generator=g).contiguous(memory_format=CL).requires_grad_(True)
    weight = torch.randn(32, 32, 1, 1, generator=g, requires_grad=True)
    up = torch.randn(2, 32, 12, 10, generator=g).contiguous(memory_format=CL)
    (PointwiseConv.apply(t, weight, torch.relu(t).detach()) * up).sum().backward()
    got = t.grad.clone(), weight.grad.clone()
    t.grad = weight.grad = None
    (F.conv2d(torch.relu(t), weight) * up).sum().backward()
    torch.testing.assert_close(got[0], t.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], weight.grad, rtol=1e-5, atol=1e-4)


def test_head_from_taps_equals_the_3x3_convolution():
    g = torch.Generator().manual_seed(5)
    parts = [torch.randn(2, 8, 9, 11, generator=g).contiguous(memory_format=CL).requires_grad_(True) for _ in range(3)]
    head = torch.nn.Conv2d(24, 2, 3, padding=1)
    up = torch.randn(2, 2, 9, 11, generator=g)
    out = _head(parts, head)
    if fused_pointwise() is not None and pointwise_grad() is not None:  # the taps in one kernel pass
        assert type(out.grad_fn.next_functions[0][0]).__name__ == "PointwiseSumBackward"
    (out * up).sum().backward()
    got = [p.grad.clone() for p in parts] + [head.weight.grad.clone()]
    for p in parts:
        p.grad = None
    head.weight.grad = None
    (F.conv2d(torch.cat(parts, 1), head.weight, padding=1) * up).sum().backward()
    for a, b in zip(got, [p.grad for p in parts] + [head.weight.grad]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
