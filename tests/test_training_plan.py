"""NasN's CPU training plan has the reference module's function and gradients (issue #17).

References: the reference module (``backend.models.nasn``) itself, in float64 through
``torch.autograd.gradcheck`` and by comparing gradients; and oneDNN's own
``convolution_backward`` in float64 for the C loop of the depthwise weight gradient.
"""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.models import build_model, load_model, shipped_weights
from backend.models.genotype import Genotype
from backend.models.kernels import GRAD_SOURCE, KernelError, build
from backend.models.kernels.gradients import DepthwiseGrad
from backend.models.training_plan import (
    DepthwiseConv, TrainingCascade, TrainingNasNModule, prepare_for_training)
from backend.search.supernet import MixedOp

CC = shutil.which("cc")

# every operation of every space, each node reading a different input
ALL_OPS = Genotype("extended", (
    (("sep_conv_3x3", 0), ("conv_9x1_1x9", 1)),
    (("dil_2_conv_3x3", 1), ("skip_connect", 2)),
    (("dil_3_conv_3x3", 2), ("skip_connect", 3)),
))


@pytest.fixture(scope="module")
def grad_kernel(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler")
    return DepthwiseGrad(build(CC, (), tmp_path_factory.mktemp("dwg"), source=GRAD_SOURCE))


def _aten_weight_grad(x, g, weight, padding, dilation):
    return torch.ops.aten.convolution_backward(
        g, x, weight, None, [1, 1], list(padding), list(dilation), False, [0, 0], weight.shape[0],
        [False, True, False])[1]


@pytest.mark.parametrize("kernel,dilation", [((3, 3), (1, 1)), ((3, 3), (2, 2)), ((3, 3), (3, 3)),
                                             ((9, 1), (1, 1)), ((1, 9), (1, 1)), ((5, 3), (2, 1))])
def test_weight_gradient_kernel_matches_onednn_in_float64(grad_kernel, kernel, dilation):
    g = torch.Generator().manual_seed(sum(kernel) + sum(dilation))
    cl = torch.channels_last
    x = torch.randn(2, 24, 19, 23, generator=g).contiguous(memory_format=cl)  # odd sizes, edges everywhere
    grad = torch.randn(2, 24, 19, 23, generator=g).contiguous(memory_format=cl)
    weight = torch.randn(24, 1, *kernel, dtype=torch.float64, generator=g)
    padding = (dilation[0] * (kernel[0] // 2), dilation[1] * (kernel[1] // 2))
    ref = _aten_weight_grad(x.double(), grad.double(), weight, padding, dilation)
    got = grad_kernel.weight_grad(x, grad, kernel, dilation)
    assert got.shape == weight.shape and got.dtype == torch.float32
    # float32 products summed per row, rows in float64: close to the float64 reference
    np.testing.assert_allclose(got.double().numpy(), ref.numpy(), rtol=0, atol=1e-4 * ref.abs().max().item())
    # and no farther from it than oneDNN's own float32 result
    f32 = _aten_weight_grad(x, grad, weight.float(), padding, dilation)
    assert (got.double() - ref).abs().max() <= (f32.double() - ref).abs().max() + 1e-5


def test_weight_gradient_kernel_independent_of_threads(grad_kernel):
    cl = torch.channels_last
    x = torch.randn(3, 32, 17, 16).contiguous(memory_format=cl)
    grad = torch.randn(3, 32, 17, 16).contiguous(memory_format=cl)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = grad_kernel.weight_grad(x, grad, (3, 3), (2, 2))
    finally:
        torch.set_num_threads(threads)
    two = grad_kernel.weight_grad(x, grad, (3, 3), (2, 2))
    torch.testing.assert_close(one, two, rtol=1e-6, atol=1e-6)


def test_weight_gradient_kernel_refuses_what_it_cannot_do(grad_kernel):
    x = torch.randn(1, 8, 6, 6)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert not grad_kernel.supports(x, x, (3, 3), (1, 1)) or x.shape[1] == 1  # NCHW is not channels last
    for args in [(cl.double(), cl.double(), (3, 3), (1, 1)), (cl, cl, (2, 2), (1, 1)), (cl, cl, (3, 3), (0, 1)),
                 (cl, cl[:, :4].contiguous(memory_format=torch.channels_last), (3, 3), (1, 1))]:
        assert not grad_kernel.supports(*args)
        with pytest.raises(KernelError):
            grad_kernel.weight_grad(*args)


@pytest.mark.parametrize("channels,dilation,size", [(16, (1, 1), (7, 9)), (32, (2, 2), (19, 23)),
                                                    (32, (3, 3), (19, 23)), (48, (2, 1), (5, 12))])
def test_one_pass_backward_matches_onednn_in_float64(grad_kernel, channels, dilation, size):
    g = torch.Generator().manual_seed(channels + sum(dilation))
    cl = torch.channels_last
    x = torch.randn(2, channels, *size, generator=g).contiguous(memory_format=cl)  # dilation 3 on 7 rows: taps off the image
    grad = torch.randn(2, channels, *size, generator=g).contiguous(memory_format=cl)
    weight = torch.randn(channels, 1, 3, 3, generator=g)
    assert grad_kernel.supports_backward(x, grad, weight, dilation)
    got_x, got_w = grad_kernel.backward(x, grad, weight, dilation)
    ref_x, ref_w = torch.ops.aten.convolution_backward(
        grad.double(), x.double(), weight.double(), None, [1, 1], list(dilation), list(dilation), False, [0, 0],
        channels, [True, True, False])[:2]
    assert got_x.is_contiguous(memory_format=cl) and got_w.shape == weight.shape
    np.testing.assert_allclose(got_x.double().numpy(), ref_x.numpy(), rtol=0, atol=1e-5 * ref_x.abs().max().item())
    np.testing.assert_allclose(got_w.double().numpy(), ref_w.numpy(), rtol=0, atol=1e-5 * ref_w.abs().max().item())


def test_one_pass_backward_refuses_what_it_cannot_do(grad_kernel):
    cl = torch.channels_last
    x = torch.randn(1, 32, 6, 6).contiguous(memory_format=cl)
    x24 = torch.randn(1, 24, 6, 6).contiguous(memory_format=cl)
    for args in [(x, x, torch.randn(32, 1, 5, 5), (1, 1)), (x24, x24, torch.randn(24, 1, 3, 3), (1, 1)),
                 (x.contiguous(), x.contiguous(), torch.randn(32, 1, 3, 3), (1, 1))]:
        assert not grad_kernel.supports_backward(*args)
        with pytest.raises(KernelError):
            grad_kernel.backward(*args)


def test_depthwise_function_passes_gradcheck():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 7, 6, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: DepthwiseConv.apply(a, b, (2, 2), (2, 2)), (x, w))
    w9 = torch.randn(3, 1, 9, 1, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: DepthwiseConv.apply(a, b, (4, 0), (1, 1)), (x, w9))


def test_module_passes_gradcheck_in_float64():
    """The whole planned module (every operation type, weight slices, shared ReLUs) against
    finite differences, with respect to the input and every parameter."""
    torch.manual_seed(0)
    module = build_model("nasn", genotype=ALL_OPS, channels=3, cells=2, cascades=1).recon[0].double()
    plan = TrainingNasNModule(module)
    names = [f"module.{n}" for n, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in module.parameters())
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(plan, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-5)


def _grads(net, model, x, k0, mask, target):
    model.zero_grad(set_to_none=True)
    out = net(x, k0, mask)
    F.l1_loss(out, target).backward()
    return out.detach(), [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_outputs_and_gradients_equal_the_reference(dtype):
    torch.manual_seed(1)
    model = build_model("nasn", genotype=ALL_OPS, channels=8, cells=3, cascades=2).to(dtype)
    model = model.to(memory_format=torch.channels_last)
    plan = prepare_for_training(model, "cpu")
    assert isinstance(plan, TrainingCascade) and list(plan.parameters()) == list(model.parameters())
    x = torch.randn(2, 2, 20, 18, dtype=dtype).contiguous(memory_format=torch.channels_last)
    k0 = torch.randn(2, 20, 18, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)
    mask = (torch.rand(2, 18) > 0.5).to(dtype)
    target = torch.randn(2, 2, 20, 18, dtype=dtype)
    out_ref, g_ref = _grads(model, model, x, k0, mask, target)
    out_plan, g_plan = _grads(plan, model, x, k0, mask, target)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(out_plan, out_ref, rtol=tol, atol=tol)
    for a, b in zip(g_plan, g_ref):
        torch.testing.assert_close(a, b, rtol=tol * 10, atol=tol * 10 * max(1.0, b.abs().max().item()))


def test_shipped_network_gradients_at_training_size():
    """The shipped NasN at the cpu preset's training size: the plan's float32 gradients are as
    close to the float64 gradients as the reference module's float32 gradients are."""
    model = load_model(shipped_weights("nasn"))[0]
    model64 = copy.deepcopy(model).double()
    model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(2)
    x = torch.randn(2, 2, 128, 128)
    k0 = torch.randn(2, 128, 128, dtype=torch.complex64)
    mask = (torch.rand(2, 128) > 0.7).float()
    target = torch.randn(2, 2, 128, 128)
    _, g64 = _grads(model64, model64, x.double(), k0.to(torch.complex128), mask.double(), target.double())
    x = x.contiguous(memory_format=torch.channels_last)
    out_ref, g_ref = _grads(model, model, x, k0, mask, target)
    out_plan, g_plan = _grads(prepare_for_training(model, "cpu"), model, x, k0, mask, target)
    assert (out_plan - out_ref).abs().max() < 1e-5

    def error(grads):  # worst relative error over the parameter tensors
        return max(((a.double() - b).norm() / b.norm()).item() for a, b in zip(grads, g64))

    assert error(g_ref) < 1e-3  # float32 rounding, sharpened by the L1 loss's sign changes
    assert error(g_plan) < 1.5 * error(g_ref) + 1e-5


def test_other_models_and_devices_train_as_they_are():
    dccnn = build_model("dccnn", channels=8, cascades=2)
    assert prepare_for_training(dccnn, "cpu") is dccnn
    nasn = build_model("nasn", channels=8, cells=1, cascades=1)
    assert prepare_for_training(nasn, "meta") is nasn
    assert isinstance(prepare_for_training(nasn, "cpu"), TrainingCascade)


def test_mixed_op_matches_its_operations():
    """The supernet's mixed edge (shared ReLU, DepthwiseConv) equals the weighted sum of its
    operations run as modules."""
    torch.manual_seed(4)
    mixed = MixedOp("extended", 6).double()
    x = torch.randn(2, 6, 11, 10, dtype=torch.float64, requires_grad=True)
    w = torch.softmax(torch.randn(len(mixed.names), dtype=torch.float64), 0).requires_grad_()
    out = mixed(x, w)
    ref = sum(wk * op(x) for wk, op in zip(w, mixed.ops))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    ga = torch.autograd.grad(out.sum(), [x, w, *mixed.parameters()])
    gb = torch.autograd.grad(ref.sum(), [x, w, *mixed.parameters()])
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
