import numpy as np
import pytest

from backend.fft import ifft2c_np
from backend.io import open_volume
from backend.masks import make_mask
from backend.tv import bart_available, bart_scaling, tv_bart, tv_torch


def _psnr(ref, x):
    return 10 * np.log10(ref.max() ** 2 / np.mean((np.abs(x) - ref) ** 2))


@pytest.fixture(scope="module")
def real_slice(sample_file):
    with open_volume(sample_file) as vol:
        s = vol[len(vol) // 2]
    mask = make_mask("random", s.kspace.shape[1], 4, seed=0).lines
    return s, mask


def test_bart_scaling_rule():
    flat = np.ones(100)
    assert bart_scaling(flat) == 1.0  # p90 == max -> p90
    peaky = np.r_[np.zeros(95), np.ones(4), 100.0]
    assert bart_scaling(peaky) == 100.0  # max - p90 >= 2 (p90 - median) -> max


def test_torch_tv_beats_zero_filled_on_real_slice(real_slice):
    s, mask = real_slice
    zf = ifft2c_np(s.kspace * mask)
    tv = tv_torch(s.kspace, mask, iterations=100)
    assert _psnr(s.reference, tv) > _psnr(s.reference, zf) + 1.0


@pytest.mark.skipif(not bart_available(), reason="BART is not installed (Debian package 'bart')")
def test_bart_and_torch_agree_on_real_slice(real_slice):
    s, mask = real_slice
    zf = ifft2c_np(s.kspace * mask)
    b200 = tv_bart(s.kspace, mask)  # the paper's setting
    assert _psnr(s.reference, b200) > _psnr(s.reference, zf) + 1.0
    # BART's ADMM is not converged after 200 iterations on these slices (measured: 26.0 dB at
    # 200, 27.4 dB at 1000); our exact-update ADMM converges faster. Near convergence the two
    # solvers of the same problem agree far better than either matches the truth.
    b = tv_bart(s.kspace, mask, iterations=1000)
    t = tv_torch(s.kspace, mask)
    assert _psnr(s.reference, t) == pytest.approx(_psnr(s.reference, b), abs=1.0)
    assert _psnr(np.abs(b), np.abs(t)) > 35
