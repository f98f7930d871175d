import numpy as np
import torch

from backend.fft import channels_to_complex, complex_to_channels, fft2c, fft2c_np, ifft2c, ifft2c_np


def _rand(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_numpy_matches_definition_and_torch():
    for shape in [(8, 8), (2, 7, 10), (3, 9, 5)]:
        x = _rand(shape)
        # independent reference: shift/FFT by hand with numpy's unnormalised FFT
        ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1))), axes=(-2, -1))
        ref /= np.sqrt(shape[-1] * shape[-2])
        np.testing.assert_allclose(fft2c_np(x), ref, atol=1e-5)
        np.testing.assert_allclose(fft2c(torch.from_numpy(x)).numpy(), ref, atol=1e-5)
        np.testing.assert_allclose(ifft2c(torch.from_numpy(ref.astype(np.complex64))).numpy(), x, atol=1e-5)


def test_round_trip_and_parseval():
    x = _rand((4, 11, 16), 1)
    np.testing.assert_allclose(ifft2c_np(fft2c_np(x)), x, atol=1e-5)
    assert np.isclose(np.linalg.norm(fft2c_np(x)), np.linalg.norm(x), rtol=1e-5)


def test_dc_component_is_centred():
    for h, w in [(8, 8), (9, 7)]:
        k = fft2c_np(np.ones((h, w), dtype=np.complex64))
        peak = np.unravel_index(np.argmax(np.abs(k)), k.shape)
        assert peak == (h // 2, w // 2)
        assert np.isclose(np.abs(k).sum(), np.abs(k[h // 2, w // 2]))


def test_channels_round_trip():
    x = torch.from_numpy(_rand((2, 5, 6)))
    ch = complex_to_channels(x)
    assert ch.shape == (2, 2, 5, 6)
    assert torch.equal(ch[:, 0], x.real) and torch.equal(ch[:, 1], x.imag)
    assert torch.equal(channels_to_complex(ch), x)
