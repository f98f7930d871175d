"""The fast inference plans compute the same function as the training modules (issue #8).

Reference: the plain module in float32 (``execution="reference"``). The criterion of the
issue: max abs difference < 1e-5 on the normalised scale the networks see.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from backend.masks import make_mask
from backend.models import build_model, load_model, shipped_weights
from backend.models.fast import FastCascade, FastNasNModule
from backend.models.fast_parts import shifted_sum
from backend.models.inference import EXECUTIONS, _Autocast, prepare_for_inference, resolve_execution, tune_allocator
from backend.models.genotype import Genotype
from backend.models.kernels import FusedPointwise, build
from backend.transforms import network_inputs

CC = shutil.which("cc")


@pytest.fixture(scope="module")
def compiled_kernel(tmp_path_factory):
    """The fused C kernel, native build, whatever NASCSMRI_KERNELS and the CPU's vector width."""
    if CC is None:
        pytest.skip("no C compiler")
    return FusedPointwise(build(CC, (), tmp_path_factory.mktemp("kernel")))


@pytest.fixture(params=["kernel", "onednn"])
def plan(request):
    """``kernel=`` for FastNasNModule: the fused C kernel, or oneDNN convolutions only."""
    return request.getfixturevalue("compiled_kernel") if request.param == "kernel" else False


def _inputs(kspace: np.ndarray, acceleration: int, seed: int = 0):
    """Network inputs of ``NetworkReconstructor``: normalised zero-filled image, k0, mask."""
    k = torch.as_tensor(kspace, dtype=torch.complex64)
    m = torch.from_numpy(make_mask("random", k.shape[-1], acceleration, seed=seed).lines.astype(np.float32))
    x, k0, _ = network_inputs(k, m)
    return x, k0, m


def _random_inputs(batch: int, h: int, w: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    image = torch.complex(torch.randn(batch, h, w, generator=g), torch.randn(batch, h, w, generator=g))
    return _inputs(torch.fft.fft2(image, norm="ortho").numpy(), 4, seed)


def _max_diff(a: torch.nn.Module, b: torch.nn.Module, x, k0, m) -> float:
    with torch.inference_mode():
        return (a(x, k0, m) - b(x, k0, m)).abs().max().item()


@pytest.mark.parametrize("acceleration", [4, 8])
def test_shipped_nasn_fast_equals_reference_on_the_real_sample(sample_file, acceleration, plan):
    with h5py.File(sample_file) as f:
        kspace = f["kspace"][2:4]
    x, k0, m = _inputs(kspace, acceleration)
    reference, _ = load_model(shipped_weights("nasn"))
    fast_model, _ = load_model(shipped_weights("nasn"))
    fast = prepare_for_inference(fast_model, "fast")
    assert isinstance(fast, FastCascade) and all(isinstance(r, FastNasNModule) for r in fast.recon)
    fast = FastCascade(fast_model, [FastNasNModule(r, kernel=plan) for r in fast_model.recon]).eval()
    assert all((r.kernel is not None) == (plan is not False) for r in fast.recon)
    reference.eval()
    with torch.inference_mode():
        expected = reference(x, k0, m)
        got = fast(x, k0, m)
    assert expected.abs().max() > 1.0  # a real image on the normalised scale, not zeros
    assert (got - expected).abs().max().item() < 1e-5


GENOTYPES = [
    Genotype("extended", [[["sep_conv_3x3", 0], ["conv_9x1_1x9", 1]],
                          [["dil_3_conv_3x3", 2], ["skip_connect", 0]],
                          [["skip_connect", 3], ["dil_2_conv_3x3", 2]],
                          [["sep_conv_3x3", 1], ["dil_3_conv_3x3", 4]]]),
    Genotype("A", [[["skip_connect", 0], ["skip_connect", 1]]]),
    Genotype("B", [[["conv_9x1_1x9", 1], ["sep_conv_3x3", 1]],
                   [["dil_2_conv_3x3", 2], ["conv_9x1_1x9", 0]]]),
]


@pytest.mark.parametrize("genotype", GENOTYPES, ids=["4-nodes-all-ops", "skips-only", "B"])
@pytest.mark.parametrize("cells,stripe_rows,shape", [(1, None, (2, 21, 18)), (3, 5, (2, 37, 29)), (4, 16, (1, 33, 40))])
def test_fast_nasn_equals_reference_for_any_genotype_size_and_stripe(genotype, cells, stripe_rows, shape, plan):
    torch.manual_seed(cells)
    reference = build_model("nasn", genotype=genotype, cells=cells, channels=8).eval()
    fast = FastCascade(reference, [FastNasNModule(r, stripe_rows, kernel=plan) for r in reference.recon]).eval()
    x, k0, m = _random_inputs(*shape, seed=cells)
    assert _max_diff(fast, reference, x, k0, m) < 1e-5


def test_stripe_halo_is_the_receptive_field():
    # node 1 = dil_3(input), node 2 = dil_2(node 1): the cell output depends on rows up to 5 away
    genotype = Genotype("A", [[["dil_3_conv_3x3", 0], ["skip_connect", 1]],
                              [["dil_2_conv_3x3", 2], ["skip_connect", 0]]])
    module = build_model("nasn", genotype=genotype, cells=2, channels=4).recon[0]
    assert FastNasNModule(module).halo == [5, 5]


def test_fused_weights_follow_refresh(plan):
    model = build_model("nasn", genotype=GENOTYPES[2], cells=2, channels=8).eval()
    fast = FastCascade(model, [FastNasNModule(r, kernel=plan) for r in model.recon]).eval()
    with torch.no_grad():
        for r in model.recon:
            for cell in r.body.cells:
                cell.preprocess0[1].weight.mul_(-0.5)
                cell.ops[2][-1].weight.mul_(2.0)  # the kernel's stacked pointwise weights are copies
                cell.ops[2][-2].weight.mul_(-1.0)  # and so are its depthwise taps
            r.head.weight.mul_(1.5)  # the head's taps are sliced copies too
    x, k0, m = _random_inputs(1, 24, 20, seed=3)
    assert _max_diff(fast, model, x, k0, m) > 1e-3  # stale copies
    for r in fast.recon:
        r.refresh()
    assert _max_diff(fast, model, x, k0, m) < 1e-5


@pytest.mark.parametrize("h,w", [(17, 23), (8, 8)])
def test_shifted_sum_of_taps_equals_the_convolution(h, w):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(24, 2, 3, padding=1, bias=False)
    x = torch.randn(2, 24, h, w)
    taps_weight = conv.weight.permute(2, 3, 0, 1).reshape(18, 24, 1, 1)  # tap-major
    with torch.no_grad():
        got = shifted_sum(torch.nn.functional.conv2d(x, taps_weight), 2)
        assert (got - conv(x)).abs().max().item() < 1e-5


def test_fast_nasn_without_fused_onednn_calls_equals_reference(monkeypatch, plan):
    """The plan's fallback (separate convolution, addition, ReLU calls) computes the same."""
    import backend.models.fast_parts as fast_module

    torch.manual_seed(5)
    reference = build_model("nasn", genotype=GENOTYPES[0], cells=2, channels=8).eval()
    x, k0, m = _random_inputs(2, 30, 26, seed=5)
    fused = FastCascade(reference, [FastNasNModule(r, 7, kernel=plan) for r in reference.recon]).eval()
    assert _max_diff(fused, reference, x, k0, m) < 1e-5
    monkeypatch.setattr(fast_module, "_FUSED", False)
    assert _max_diff(fused, reference, x, k0, m) < 1e-5


@pytest.mark.parametrize("name,kwargs", [("dccnn", {"blocks": 3}), ("modl", {"blocks": 2}), ("rdn", {"blocks": 2}), ("unet", {})])
def test_other_models_run_channels_last_with_the_same_parameters(name, kwargs):
    torch.manual_seed(0)
    reference = build_model(name, channels=8, **kwargs).eval()
    copy = build_model(name, channels=8, **kwargs)
    copy.load_state_dict(reference.state_dict())
    fast = prepare_for_inference(copy, "fast")
    assert fast is copy  # no re-planning for dense convolutions, only the memory format
    weight = next(p for p in fast.parameters() if p.dim() == 4 and p.shape[1] > 1)
    if name == "unet":  # measured slower in channels_last: kept contiguous
        assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last)
    else:
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    x, k0, m = _random_inputs(2, 32, 32, seed=1)
    assert _max_diff(fast, reference, x, k0, m) < 1e-4


def test_reference_execution_returns_the_module_unchanged():
    model = build_model("nasn", genotype=GENOTYPES[1], channels=4)
    weight = model.recon[0].stem.weight
    assert prepare_for_inference(model, "reference") is model
    assert not model.training
    assert weight.is_contiguous()  # not moved to channels_last


def test_execution_names():
    assert EXECUTIONS == ("auto", "reference", "fast")
    assert resolve_execution("auto") == "fast"
    assert resolve_execution("reference") == "reference"
    with pytest.raises(ValueError, match="execution must be one of"):
        resolve_execution("turbo")


def test_allocator_tuning_applies_on_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert tune_allocator() is True
    assert tune_allocator() is True  # idempotent


def test_autocast_wrapper_keeps_float32_outputs_close():
    """The GPU plan's wrapper (bf16 inside the module), exercised with CPU autocast."""
    torch.manual_seed(0)
    module = build_model("dccnn", blocks=2, channels=8).recon[0].eval()
    x = torch.randn(1, 2, 24, 24)
    with torch.no_grad():
        expected = module(x)
        got = _Autocast(module, "cpu", torch.bfloat16)(x)
    assert got.dtype == torch.float32
    assert (got - expected).abs().max().item() < 0.1 * expected.abs().max().item()


def test_cli_fast_and_reference_executions_agree(sample_file, tmp_path):
    source = tmp_path / "ch2_three_slices.h5"  # three real slices: an odd batch of 2 + 1
    with h5py.File(sample_file) as f, h5py.File(source, "w") as g:
        g["kspace"] = f["kspace"][2:5]
        g["reconstruction_esc"] = f["reconstruction_esc"][2:5]
    outs = {}
    for execution in ("reference", "fast"):
        out = tmp_path / f"{execution}.h5"
        proc = subprocess.run([sys.executable, "-m", "backend.cli", "reconstruct", str(source), "--model", "nasn",
                               "--execution", execution, "--batch-size", "2", "--out", str(out), "--quiet"],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        with h5py.File(out) as f:
            outs[execution] = f["reconstruction"][()]
    scale = outs["reference"].max()
    # 1e-5 on the normalised scale (6 / max|zero-filled|, and max|zero-filled| <~ max|output|)
    assert np.abs(outs["fast"] - outs["reference"]).max() < 2e-5 * scale / 6


def test_cli_rejects_a_zero_batch_size(sample_file, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "backend.cli", "reconstruct", str(sample_file), "--model", "nasn",
                           "--batch-size", "0", "--out", str(tmp_path / "x.h5")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "positive integer" in proc.stderr
    assert not (tmp_path / "x.h5").exists()


def test_fast_nasn_in_worker_threads_equals_reference(plan):
    """The viewer reconstructs off the GUI thread: the kernel's OpenMP team is then started
    from a worker thread, here two at once."""
    import threading

    torch.manual_seed(11)
    reference = build_model("nasn", genotype=GENOTYPES[0], cells=2, channels=32).eval()
    fast = FastCascade(reference, [FastNasNModule(r, kernel=plan) for r in reference.recon]).eval()
    x, k0, m = _random_inputs(1, 40, 36, seed=11)
    with torch.inference_mode():
        expected = reference(x, k0, m)
    diffs = []

    def work():
        with torch.inference_mode():
            for _ in range(3):
                diffs.append((fast(x, k0, m) - expected).abs().max().item())

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(diffs) == 6 and max(diffs) < 1e-5


def test_an_operation_without_a_plan_falls_back_to_the_reference_path(monkeypatch):
    """An operation added to the registry that the fast plan cannot express (average pooling)
    runs on the reference path of its module, with one warning, and the outputs are correct."""
    from backend.models import ops

    monkeypatch.setitem(ops.OPS, "avg_pool_3x3", lambda c: torch.nn.AvgPool2d(3, stride=1, padding=1))
    monkeypatch.setitem(ops.SPACES, "A", ops.SPACES["A"][:-1] + ("avg_pool_3x3", "none"))
    g = Genotype("A", ((("avg_pool_3x3", 0), ("sep_conv_3x3", 1)), (("skip_connect", 0), ("dil_2_conv_3x3", 2))))
    torch.manual_seed(0)
    model = build_model("nasn", genotype=g, channels=8, cells=2, cascades=2)
    x, k0, m = _random_inputs(1, 24, 24, 0)
    with torch.inference_mode():
        ref = model.eval()(x, k0, m)
    with pytest.warns(RuntimeWarning, match="reference path"):
        fast = prepare_for_inference(model, "fast")
    assert not any(isinstance(r, FastNasNModule) for r in fast.recon)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x, k0, m), ref, rtol=1e-5, atol=1e-5)
