"""The fused C kernel computes what PyTorch's convolutions compute (issue #8).

Reference: ``F.conv2d`` (depthwise, "same" zero padding), ``torch.einsum`` for the 1x1 part,
plain additions and ReLUs, in float64. Every build this CPU can run is checked: the machine's
native one (its AVX-512 or AVX2 paths, whichever the CPU has), one compiled with
``-mno-avx512f`` (the AVX2 paths on a CPU with AVX2) and one with AVX2 and AVX-512 switched off
(the plain C loops other machines run).
"""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F

from backend.models import kernels
from backend.models.kernels import FusedPointwise, KernelError, build, depthwise_taps

CC = shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


BUILDS = {"native": (), "no-avx512": ("-mno-avx512f",), "plain": ("-mno-avx2", "-mno-fma", "-mno-avx512f")}


def _cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        return set(next((line for line in f if line.startswith("flags")), "").split())


@pytest.fixture(scope="module", params=list(BUILDS))
def kernel(request, tmp_path_factory):
    lib = FusedPointwise(build(CC, BUILDS[request.param], tmp_path_factory.mktemp(request.param)))
    flags = _cpu_flags()
    avx2 = 256 if {"avx2", "fma"} <= flags else 0
    expected = {"native": 512 if "avx512f" in flags else avx2, "no-avx512": avx2, "plain": 0}
    assert lib.vector_bits == expected[request.param]
    return lib


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _reference(inputs, weight, outputs, adds, bias):
    """What the kernel should write, in float64."""
    parts = []
    for x, relu, conv, _ in inputs:
        x = x.double().relu() if relu else x.double()
        if conv is not None:
            x = F.conv2d(x, conv.weight.double(), None, 1, conv.padding, conv.dilation, conv.groups)
        parts.append(x)
    acc = torch.einsum("bkhw,ko->bohw", torch.cat(parts, 1), weight.double())
    if bias is not None:
        acc = acc + bias.double().view(1, -1, 1, 1)
    for a in adds:
        acc[:, :a.shape[1]] += a.double()
    return [(acc[:, off:off + y.shape[1]].relu() if relu else acc[:, off:off + y.shape[1]]) for y, off, relu in outputs]


def _depthwise(channels: int, kernel_size: tuple[int, int], dilation: tuple[int, int]) -> torch.nn.Conv2d:
    padding = tuple(d * (k // 2) for k, d in zip(kernel_size, dilation))
    return torch.nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation,
                           groups=channels, bias=False)


CASES = [
    # (channels per input, depthwise (kernel, dilation) or None per input, relu per input, H, W, cpad, adds, bias)
    ([32, 32], [((3, 3), (2, 2)), ((3, 3), (3, 3))], [True, False], 40, 37, 32, 0, False),
    ([32], [((3, 3), (1, 1))], [True], 11, 64, 32, 1, False),
    ([32, 32, 32], [None, None, None], [True, False, True], 9, 21, 64, 0, False),
    ([48, 16], [((1, 9), (1, 1)), ((9, 1), (1, 1))], [False, True], 13, 19, 32, 2, True),
    ([8, 5], [((3, 3), (1, 1)), None], [True, True], 2, 3, 32, 1, True),  # taps reach past a 2-row window
    ([32], [((5, 5), (2, 3))], [False], 17, 8, 96, 1, True),
    # 24 and 40 channels: the AVX2 depthwise block's last 8-channel slice on its own
    ([24, 40], [((3, 3), (1, 1)), ((3, 3), (2, 2))], [True, False], 12, 40, 32, 0, False),
]


def _check_case(kernel, seed, channels, convs, relus, h, w, cpad, n_adds, with_bias, outputs) -> None:
    """Run the kernel on random inputs of this geometry into ``outputs`` (NaN-filled; ``(y,
    offset, relu)``) and compare every output with :func:`_reference`."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the depthwise convolutions' initial weights
    inputs = []
    for c, spec, relu in zip(channels, convs, relus):
        x = _channels_last(torch.randn(1, c, h, w, generator=g))
        conv = None if spec is None else _depthwise(c, *spec)
        inputs.append((x, relu, conv, spec))
    k = sum(channels)
    weight = torch.randn(k, cpad, generator=g) / k ** 0.5
    bias = torch.randn(cpad, generator=g) if with_bias else None
    adds = [_channels_last(torch.randn(1, 32, h, w, generator=g)) for _ in range(n_adds)]
    kernel.run([(x, relu, None if conv is None else depthwise_taps(conv), spec) for x, relu, conv, spec in inputs],
               weight, outputs, adds=adds, bias=bias)
    for (got, _, _), expected in zip(outputs, _reference(inputs, weight, outputs, adds, bias)):
        assert torch.isfinite(got).all()  # every pixel written
        assert (got.double() - expected).abs().max().item() < 1e-4 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("case", range(len(CASES)))
def test_kernel_equals_pytorch(kernel, case):
    channels, convs, relus, h, w, cpad, n_adds, with_bias = CASES[case]
    # three outputs: raw channels last, rectified channels last, and raw channel planes
    outputs = [(_channels_last(torch.full((1, 32, h, w), float("nan"))), 0, False),
               (_channels_last(torch.full((1, 20, h, w), float("nan"))), cpad - 20, True),
               (torch.full((1, 18, h, w), float("nan")), 3, False)]
    _check_case(kernel, case, channels, convs, relus, h, w, cpad, n_adds, with_bias, outputs)


REGISTER_CASES = [
    # (channels per input, depthwise geometry per input, relu per input, H, W, cpad, adds, bias, output offsets)
    ([32], [((3, 3), (1, 1))], [True], 9, 48, 32, 1, False, [0]),
    ([32, 32], [((3, 3), (2, 2)), ((3, 3), (3, 3))], [False, True], 12, 41, 32, 0, True, [0, 0]),
    ([32], [((3, 3), (4, 4))], [False], 11, 56, 32, 2, False, [0]),
    ([32], [((3, 3), (5, 2))], [True], 13, 64, 64, 1, True, [32, 0]),  # dilation 5 wide, 2 high
    ([64, 32], [((3, 3), (1, 2)), None], [True, False], 7, 40, 96, 0, False, [64, 0, 32]),
    ([16], [((1, 9), (1, 1))], [True], 6, 33, 32, 0, False, [0]),
]


@pytest.mark.parametrize("case", range(len(REGISTER_CASES)))
def test_kernel_equals_pytorch_on_its_register_path(kernel, case):
    """Outputs that are whole aligned 32-channel blocks take the path that keeps each block in
    registers, and depthwise taps three wide take the path that loads each input vector once:
    both equal PyTorch's convolutions (dilations 1-5, interior and edge blocks)."""
    channels, convs, relus, h, w, cpad, n_adds, with_bias, offsets = REGISTER_CASES[case]
    outputs = [(_channels_last(torch.full((1, 32, h, w), float("nan"))), off, i % 2 == 1)
               for i, off in enumerate(offsets)]
    _check_case(kernel, 100 + case, channels, convs, relus, h, w, cpad, n_adds, with_bias, outputs)


@pytest.mark.parametrize("cpad, plane_offset", [(32, 0), (64, 37)])
def test_kernel_register_path_writes_channel_planes(kernel, cpad, plane_offset):
    """Channel-plane outputs within one 32-channel block (the head's 18 taps) stay on the register
    path (transposed in a tile): equal to PyTorch, every pixel written, nothing else touched."""
    g = torch.Generator().manual_seed(cpad)
    h, w = 9, 44
    x = _channels_last(torch.randn(1, 32, h, w, generator=g))
    inputs = [(x, True, _depthwise(32, (3, 3), (2, 2)), ((3, 3), (2, 2)))]
    weight = torch.randn(32, cpad, generator=g) / 32 ** 0.5
    planes = torch.full((1, 18, h, w), float("nan"))
    outputs = [(planes, plane_offset, plane_offset > 0),
               (_channels_last(torch.full((1, 32, h, w), float("nan"))), 0, True)]
    kernel.run([(t, relu, depthwise_taps(conv), spec) for t, relu, conv, spec in inputs], weight, outputs)
    for (got, _, _), expected in zip(outputs, _reference(inputs, weight, outputs, [], None)):
        assert torch.isfinite(got).all()
        assert (got.double() - expected).abs().max().item() < 1e-4 * max(1.0, expected.abs().max().item())


PLANES_CASES = [
    # (channels per input, depthwise geometry per input, relu per input, H, W, cpad, bias, outputs as
    # (channels, offset, relu)): only channel planes and no addends, the AVX-512 build's planes path
    ([32, 32, 32], [None, None, None], [False, False, False], 5, 44, 32, False, [(18, 0, False)]),  # the head
    ([24, 16], [((3, 3), (2, 2)), None], [True, False], 6, 21, 64, True, [(30, 3, False), (20, 37, True)]),
    ([32], [((3, 3), (3, 3))], [False], 4, 7, 32, True, [(5, 27, True)]),  # one partial block per row
    ([16, 32], [None, ((3, 3), (1, 1))], [True, True], 3, 33, 96, False, [(60, 10, False), (2, 90, False)]),
    ([8], [None], [False], 3, 48, 32, True, [(7, 0, True)]),  # K < 16 (no whole tile); a last block of 16
    ([256, 16], [None, None], [False, True], 2, 20, 32, False, [(18, 0, False)]),  # K > 256: the other path
    ([32], [((3, 3), (2, 2))], [True], 3, 25, 32, False, [(18, 0, False)]),  # rows of 16 + 9 (AVX2), 25 (AVX-512)
    ([32], [None], [False], 2, 49, 32, True, [(18, 0, True)]),  # rows of 32 + 17 (AVX-512), 3 x 16 + 1 (AVX2)
]


@pytest.mark.parametrize("case", range(len(PLANES_CASES)))
def test_kernel_planes_only_outputs_equal_pytorch(kernel, case):
    """Calls that write only channel planes (the head's taps) take the planes path (AVX-512, AVX2):
    input widths off the 16-channel tiles, rows off the 16-pixel blocks, more output channels than
    one pass holds (24), offsets inside the padded width; equal to PyTorch, every pixel written."""
    channels, convs, relus, h, w, cpad, with_bias, specs = PLANES_CASES[case]
    outputs = [(torch.full((1, c, h, w), float("nan")), off, relu) for c, off, relu in specs]
    _check_case(kernel, 200 + case, channels, convs, relus, h, w, cpad, 0, with_bias, outputs)


def test_python_limits_are_the_c_sources():
    """The wrapper's limits (checks in ``run``, ``bench/kernel_calls.py``'s MAC count) are the
    C source's ``#define``s."""
    import re

    source = kernels.SOURCE.read_text()
    defines = {name: int(value) for name, value in re.findall(r"#define (\w+) (\d+)", source)}
    assert (defines["MAX_K"], defines["MAX_CPAD"], defines["PLANES_MAX_K"]) == \
        (kernels.MAX_K, kernels.MAX_CPAD, kernels.PLANES_MAX_K)


def test_kernel_planes_only_into_row_windows(kernel):
    """The planes path writes a window of rows of larger channel planes, nothing around it."""
    g = torch.Generator().manual_seed(8)
    x = _channels_last(torch.randn(1, 48, 20, 35, generator=g))
    weight = torch.randn(48, 32, generator=g)
    planes = torch.zeros(1, 18, 20, 35)
    kernel.run([(x[:, :, 6:15], True, None, None)], weight, [(planes[:, :, 6:15], 0, False)])
    expected = torch.einsum("bkhw,ko->bohw", x[:, :, 6:15].relu().double(), weight[:, :18].double())
    assert (planes[:, :, 6:15].double() - expected).abs().max() < 1e-4 * expected.abs().max()
    assert planes[:, :, :6].abs().max() == 0 and planes[:, :, 15:].abs().max() == 0


def test_kernel_writes_row_windows_of_larger_tensors(kernel):
    """A window of rows of a channels-last tensor and of channel planes is written in place,
    the rows around it untouched (how the striped NasN plan uses it)."""
    g = torch.Generator().manual_seed(7)
    x = _channels_last(torch.randn(1, 32, 30, 16, generator=g))
    weight = torch.randn(32, 32, generator=g)
    out_last = _channels_last(torch.zeros(1, 32, 30, 16))
    out_planes = torch.zeros(1, 32, 30, 16)
    kernel.run([(x[:, :, 10:20], False, None, None)], weight,
               [(out_last[:, :, 10:20], 0, False), (out_planes[:, :, 10:20], 0, True)])
    expected = torch.einsum("bkhw,ko->bohw", x[:, :, 10:20], weight)
    assert torch.allclose(out_last[:, :, 10:20], expected, atol=1e-4)
    assert torch.allclose(out_planes[:, :, 10:20], expected.relu(), atol=1e-4)
    assert out_last[:, :, :10].abs().max() == 0 and out_last[:, :, 20:].abs().max() == 0
    assert out_planes[:, :, :10].abs().max() == 0 and out_planes[:, :, 20:].abs().max() == 0


def test_kernel_refuses_what_it_cannot_read(kernel):
    x = _channels_last(torch.randn(1, 32, 8, 8))
    out = _channels_last(torch.empty(1, 32, 8, 8))
    weight = torch.randn(32, 32)
    with pytest.raises(KernelError, match="channels-last"):
        kernel.run([(x.contiguous(), False, None, None)], weight, [(out, 0, False)])  # NCHW input
    with pytest.raises(KernelError, match="channels-last"):
        kernel.run([(x.double(), False, None, None)], weight, [(out, 0, False)])
    with pytest.raises(KernelError, match="weight"):
        kernel.run([(x, False, None, None)], torch.randn(32, 24), [(out, 0, False)])  # not a multiple of 32
    with pytest.raises(KernelError, match="weight"):
        kernel.run([(x, False, None, None)], torch.randn(16, 32), [(out, 0, False)])  # K mismatch
    with pytest.raises(KernelError, match="outside"):
        kernel.run([(x, False, None, None)], weight, [(_channels_last(torch.empty(1, 16, 8, 8)), 20, False)])
    with pytest.raises(KernelError, match="taps"):
        kernel.run([(x, False, torch.randn(9, 16), ((3, 3), (1, 1)))], weight, [(out, 0, False)])
    with pytest.raises(KernelError, match="channels-last"):
        kernel.run([(x, False, None, None)], weight, [(_channels_last(torch.empty(1, 32, 8, 9)), 0, False)])
    with pytest.raises(KernelError, match="odd sizes"):
        kernel.run([(x, False, torch.randn(4, 32), ((2, 2), (1, 1)))], weight, [(out, 0, False)])
    with pytest.raises(KernelError, match="odd sizes"):
        kernel.run([(x, False, torch.randn(9, 32), ((3, 3), (0, 1)))], weight, [(out, 0, False)])
    with pytest.raises(KernelError, match="shares memory"):  # in place would read overwritten neighbours
        kernel.run([(x, False, torch.randn(9, 32), ((3, 3), (1, 1)))], weight, [(x, 0, False)])
    with pytest.raises(KernelError, match="shares memory"):
        kernel.run([(x, False, None, None)], weight, [(out, 0, False), (out, 0, True)])


def test_switch_and_missing_compiler(monkeypatch):
    monkeypatch.setattr(kernels, "_LOADED", {})
    monkeypatch.setenv("NASCSMRI_KERNELS", "0")
    assert kernels.fused_pointwise() is None
    monkeypatch.setenv("NASCSMRI_KERNELS", "sometimes")
    with pytest.raises(ValueError, match="NASCSMRI_KERNELS"):
        kernels.fused_pointwise()
    monkeypatch.setenv("NASCSMRI_KERNELS", "1")
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        assert kernels.fused_pointwise() is None
    # a compiler that fails: a warning, and the oneDNN plan
    monkeypatch.setattr(kernels, "_LOADED", {})
    monkeypatch.setenv("CC", "false")
    with pytest.warns(RuntimeWarning, match="not available"):
        assert kernels.fused_pointwise() is None


def test_auto_uses_the_kernel_only_with_vector_paths(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "_LOADED", {"kernel": FusedPointwise(build(CC, BUILDS["plain"], tmp_path))})
    monkeypatch.setenv("NASCSMRI_KERNELS", "auto")
    assert kernels.fused_pointwise() is None
    monkeypatch.setenv("NASCSMRI_KERNELS", "1")
    assert kernels.fused_pointwise() is not None
    if {"avx2", "fma"} <= _cpu_flags():  # an AVX2 build is used by default
        monkeypatch.setattr(kernels, "_LOADED", {"kernel": FusedPointwise(build(CC, BUILDS["no-avx512"], tmp_path))})
        monkeypatch.setenv("NASCSMRI_KERNELS", "auto")
        assert kernels.fused_pointwise().vector_bits == 256


def test_build_is_cached_by_content(tmp_path):
    first = build(CC, (), tmp_path)
    stamp = first.stat().st_mtime_ns
    assert build(CC, (), tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert build(CC, ("-O2",), tmp_path) != first
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FusedPointwise(first)  # loads without warnings, ABI matches
