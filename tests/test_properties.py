"""Property tests (hypothesis) of the masks, the data-consistency layer and the FFT.

Sizes, accelerations, centre fractions, seeds and data are drawn by hypothesis; each test keeps
``max_examples`` small so the whole file runs in a few seconds. No example database is written.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.dc import data_consistency
from backend.fft import fft2c, fft2c_np, ifft2c, ifft2c_np
from backend.masks import EquiSpacedMaskFunc, RandomMaskFunc, center_block, make_mask

FAST = settings(max_examples=40, deadline=None, database=None)

widths = st.integers(8, 1024)
accelerations = st.integers(2, 12)
seeds = st.one_of(st.integers(0, 2**32 - 1),
                  st.lists(st.integers(0, 0x10FFFF), min_size=1, max_size=12).map(tuple))  # file-name seeds


@st.composite
def mask_params(draw):
    """(W, acceleration, centre fraction with cf * acc <= 1, seed)."""
    acc = draw(accelerations)
    cf = draw(st.floats(0, 1, allow_nan=False)) / acc
    return draw(widths), acc, cf, draw(seeds)


def _centre(W: int, cf: float) -> tuple[int, int]:
    num_low = round(W * cf)
    return (W - num_low + 1) // 2, num_low


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@FAST
@given(params=mask_params())
def test_centre_block_at_the_fastmri_position(kind, params):
    W, acc, cf, seed = params
    mask = make_mask(kind, W, acc, cf, seed=seed)
    start, num_low = _centre(W, cf)
    assert mask.lines.shape == (W,) and mask.lines.dtype == bool
    assert mask.num_low_frequencies == num_low
    assert mask.lines[start : start + num_low].all()
    assert np.array_equal(center_block(W, num_low), np.isin(np.arange(W), np.arange(start, start + num_low)))
    assert mask.acceleration == acc
    n = int(mask.lines.sum())  # a random mask without centre block may draw no line at all
    assert mask.realised_acceleration == (pytest.approx(W / n) if n else float("inf"))


@FAST
@given(params=mask_params())
def test_equispaced_lines_have_the_acceleration_spacing(params):
    W, acc, cf, seed = params
    mask = make_mask("equispaced", W, acc, cf, seed=seed)
    centre = center_block(W, round(W * cf))
    outer = mask.lines & ~centre
    # outside the centre block: exactly every acc-th column from one offset in [0, acc)
    offsets = [o for o in range(acc) if np.array_equal(outer, (np.arange(W) % acc == o) & ~centre)]
    assert offsets, f"outer lines {np.flatnonzero(outer)} are not every {acc}th column"
    assert mask.lines[offsets[0]::acc].all()  # none skipped, centre block included


@pytest.mark.parametrize("kind", ["random", "equispaced"])
@FAST
@given(params=mask_params(), other=st.integers(0, 2**32 - 1))
def test_same_seed_same_mask_and_global_rng_untouched(kind, params, other):
    W, acc, cf, seed = params
    np.random.seed(other % 1000)
    before = np.random.get_state()
    first = make_mask(kind, W, acc, cf, seed=seed)
    # a mask function with a different own state and an unseeded draw in between
    func = {"random": RandomMaskFunc, "equispaced": EquiSpacedMaskFunc}[kind]([acc], [cf], seed=other)
    func(W)
    own = func.rng.get_state()
    second = func(W, seed=seed)
    assert np.array_equal(first.lines, second.lines)
    assert first.num_low_frequencies == second.num_low_frequencies
    # the seeded call left the function's own generator where it was, and numpy's global one
    after_own = func.rng.get_state()
    assert own[0] == after_own[0] and np.array_equal(own[1], after_own[1]) and own[2:] == after_own[2:]
    after = np.random.get_state()
    assert np.array_equal(before[1], after[1]) and before[2:] == after[2:]


# -- data consistency ------------------------------------------------------------------------
@st.composite
def dc_problem(draw):
    """Network output x, measured k-space k0 (zero off the mask) and the column mask."""
    B, H, W = draw(st.integers(1, 2)), draw(st.integers(1, 17)), draw(st.integers(2, 17))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    lines = torch.rand(W, generator=g) < draw(st.floats(0.1, 0.9))
    lines[W // 2] = True  # at least the centre line
    mask = lines.float()
    k0 = fft2c(torch.randn(B, H, W, generator=g, dtype=torch.complex64)) * mask
    x = torch.randn(B, H, W, generator=g, dtype=torch.complex64) * draw(st.sampled_from([1e-3, 1.0, 1e3]))
    return x, k0, mask


def _close(a, b, scale):
    torch.testing.assert_close(a, b, atol=1e-5 * scale, rtol=1e-5)


@FAST
@given(problem=dc_problem())
def test_dc_keeps_measured_lines_and_is_idempotent(problem):
    x, k0, mask = problem
    scale = float(max(x.abs().max(), k0.abs().max()))
    out = data_consistency(x, k0, mask)
    k_out, k = fft2c(out), fft2c(x)
    m = mask.bool()
    _close(k_out[..., m], k0[..., m], scale)  # measured lines replaced by the measurement
    _close(k_out[..., ~m], k[..., ~m], scale)  # the others are the network's
    _close(data_consistency(out, k0, mask), out, scale)  # a projection: DC(DC(x)) = DC(x)


@FAST
@given(problem=dc_problem(), lam=st.floats(1e-3, 1e3))
def test_finite_lambda_lies_between_the_network_and_the_measurement(problem, lam):
    x, k0, mask = problem
    scale = float(max(x.abs().max(), k0.abs().max()))
    k = fft2c(x)
    k_out = fft2c(data_consistency(x, k0, mask, lam=lam))
    m = mask.bool()
    t = lam / (1 + lam)
    # on measured lines: the point k + t (k0 - k) of the segment from k (lam = 0) to k0 (lam = inf)
    _close(k_out[..., m], k[..., m] + t * (k0[..., m] - k[..., m]), scale)
    gap = (k0 - k)[..., m].abs()
    tol = 1e-4 * scale
    assert torch.all((k_out - k)[..., m].abs() <= gap + tol)
    assert torch.all((k_out - k0)[..., m].abs() <= gap + tol)
    _close(k_out[..., ~m], k[..., ~m], scale)


# -- FFT ---------------------------------------------------------------------------------------
@st.composite
def images(draw):
    shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2))) + (draw(st.integers(1, 33)), draw(st.integers(1, 33)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@FAST
@given(x=images())
def test_fft_round_trip_and_parseval_numpy_and_torch(x):
    norm = np.linalg.norm(x)
    k = fft2c_np(x)
    np.testing.assert_allclose(ifft2c_np(k), x, atol=1e-5 * max(1, np.abs(x).max()))
    np.testing.assert_allclose(fft2c_np(ifft2c_np(x)), x, atol=1e-5 * max(1, np.abs(x).max()))
    assert np.linalg.norm(k) == pytest.approx(norm, rel=1e-5)
    xt = torch.from_numpy(x)
    kt = fft2c(xt)
    np.testing.assert_allclose(kt.numpy(), k, atol=1e-4 * max(1, np.abs(k).max()))
    torch.testing.assert_close(ifft2c(kt), xt, atol=1e-5 * max(1, float(xt.abs().max())), rtol=1e-5)
    assert float(torch.linalg.vector_norm(kt)) == pytest.approx(norm, rel=1e-5)


@FAST
@given(h=st.integers(1, 33), w=st.integers(1, 33))
def test_zero_frequency_sits_at_the_centre(h, w):
    k = fft2c_np(np.ones((h, w), np.complex64))
    assert abs(k[h // 2, w // 2]) == pytest.approx(np.sqrt(h * w), rel=1e-5)
    k[h // 2, w // 2] = 0
    assert np.abs(k).max() < 1e-4
