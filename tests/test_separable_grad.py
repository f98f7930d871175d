"""The depthwise kernels of NasN's training plan against PyTorch in float64 (issue #17):
``dwg_backward`` with and without the ReLU folded in, and ``dwg_separable_backward`` (the gradients of
``conv1x1(depthwise3x3(relu(x)))`` in one pass), at sizes where taps fall off every edge and
with thread counts that split images between threads."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from backend.models import build_model
from backend.models.kernels import GRAD_SOURCE, KernelError, build, fused_pointwise
from backend.models.kernels.gradients import DepthwiseGrad, depthwise_grad, pointwise_grad
from backend.models.training_plan import TrainingNasNModule
from tests.test_pointwise_grad import ISA_FLAGS
from tests.test_training_plan import ALL_OPS

CL = torch.channels_last
CASES = [((2, 32, 19, 23), (1, 1), 32), ((2, 32, 19, 21), (3, 3), 32), ((3, 16, 7, 9), (3, 3), 16),
         ((1, 32, 11, 13), (2, 1), 48), ((2, 16, 5, 4), (2, 2), 16),
         ((2, 16, 9, 10), (1, 2), 18)]  # 18 outputs: groups of 4 and 2 left over


@pytest.fixture(scope="module", params=sorted(ISA_FLAGS))
def kernel(request, tmp_path_factory):
    """The kernel as ``-march=native`` builds it, and without AVX-512, and without any vector ISA."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    return DepthwiseGrad(build(shutil.which("cc"), ISA_FLAGS[request.param], tmp_path_factory.mktemp("dwg"),
                               source=GRAD_SOURCE))


def _tensors(shape, out_channels, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g).contiguous(memory_format=CL)
    grad = torch.randn(shape[0], out_channels, *shape[2:], generator=g).contiguous(memory_format=CL)
    depthwise = torch.randn(shape[1], 1, 3, 3, generator=g)
    pointwise = torch.randn(out_channels, shape[1], 1, 1, generator=g)
    return x, grad, depthwise, pointwise


def _close(got, ref, scale=1e-6):
    err = (got.double() - ref).abs().max().item()
    assert err <= scale * ref.abs().max().item(), (err, ref.abs().max().item())


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("shape,dilation,out_channels", CASES)
def test_separable_backward_equals_autograd_in_float64(kernel, shape, dilation, out_channels, threads):
    x, grad, depthwise, pointwise = _tensors(shape, out_channels)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        got = kernel.separable_backward(x, grad, depthwise, pointwise, dilation)
    finally:
        torch.set_num_threads(before)
    leaves = [t.double().requires_grad_() for t in (x, depthwise, pointwise)]
    y = F.conv2d(F.conv2d(torch.relu(leaves[0]), leaves[1], padding=dilation, dilation=dilation,
                          groups=shape[1]), leaves[2])
    ref = torch.autograd.grad(y, leaves, grad.double())
    assert got[0].is_contiguous(memory_format=CL)
    for a, b in zip(got, ref):
        assert a.shape == b.shape and a.dtype == torch.float32
        _close(a, b)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape,dilation,out_channels", CASES[:3])
def test_depthwise_backward_with_and_without_its_relu(kernel, shape, dilation, out_channels, relu):
    x, grad, depthwise, _ = _tensors(shape, shape[1], seed=2)
    source = torch.relu if relu else (lambda t: t)
    leaves = [t.double().requires_grad_() for t in (x, depthwise)]
    y = F.conv2d(source(leaves[0]), leaves[1], padding=dilation, dilation=dilation, groups=shape[1])
    for a, b in zip(kernel.backward(x, grad, depthwise, dilation, relu=relu),
                    torch.autograd.grad(y, leaves, grad.double())):
        _close(a, b)


def test_separable_backward_refuses_what_it_cannot_do(kernel):
    x, grad, depthwise, pointwise = _tensors((1, 32, 6, 6), 32)
    for args in [(x, grad.contiguous(), depthwise, pointwise), (x, grad[:, :16].contiguous(memory_format=CL),
                 depthwise, pointwise), (x, grad, torch.randn(32, 1, 5, 5), pointwise)]:
        with pytest.raises(KernelError):
            kernel.separable_backward(*args, (1, 1))


def test_training_plan_runs_dilated_convolutions_through_the_one_pass_function():
    """At 16 channels every 3x3 operation of the plan is a RectifiedSeparable and every
    preprocessing convolution (and the head) a PointwiseSum, and the plan still equals the reference
    module."""
    if fused_pointwise() is None or depthwise_grad() is None or pointwise_grad() is None:
        pytest.skip("no kernels on this machine")
    torch.manual_seed(5)
    module = build_model("nasn", genotype=ALL_OPS, channels=16, cells=2, cascades=1).recon[0]
    module = module.to(memory_format=CL)
    x = torch.randn(2, 2, 21, 19).contiguous(memory_format=CL)
    out = TrainingNasNModule(module)(x)
    names, seen, stack = set(), set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None and id(fn) not in seen:
            seen.add(id(fn))
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
    assert {"RectifiedSeparableBackward", "PointwiseSumBackward"} <= names
    ref = module(x)
    torch.testing.assert_close(out, ref, rtol=2e-5, atol=2e-5)
    ga = torch.autograd.grad(out.square().sum(), list(module.parameters()))
    gb = torch.autograd.grad(ref.square().sum(), list(module.parameters()))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-4 * max(1.0, b.abs().max().item()))


def test_supernet_mixed_edge_in_float32_through_the_one_pass_depthwise_backward():
    """The search's mixed edge at 16 channels, channels_last float32 (where ``DepthwiseConv``
    takes both gradients from ``dwg_backward``): gradients equal those of its operations run as
    modules, to float32 rounding."""
    from backend.search.supernet import MixedOp

    if depthwise_grad() is None:
        pytest.skip("no depthwise kernel on this machine")
    torch.manual_seed(6)
    mixed = MixedOp("extended", 16).to(memory_format=CL)
    x = torch.randn(2, 16, 23, 19).contiguous(memory_format=CL).requires_grad_()
    w = torch.softmax(torch.randn(len(mixed.names)), 0).requires_grad_()
    out = mixed(x, w)
    ref = sum(wk * op(x) for wk, op in zip(w, mixed.ops))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    ga = torch.autograd.grad(out.square().sum(), [x, w, *mixed.parameters()])
    gb = torch.autograd.grad(ref.square().sum(), [x, w, *mixed.parameters()])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * max(1.0, b.abs().max().item()))
