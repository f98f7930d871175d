import numpy as np
import pytest
import torch

from backend.dc import DataConsistency, data_consistency, zero_filled
from backend.fft import complex_to_channels, fft2c, fft2c_np, ifft2c_np
from backend.masks import make_mask


def _setup(seed=0, B=2, H=12, W=16):
    g = torch.Generator().manual_seed(seed)
    x_true = torch.randn(B, H, W, generator=g, dtype=torch.complex64)
    k_full = fft2c(x_true)
    mask = torch.from_numpy(make_mask("random", W, 4, seed=seed).lines.astype(np.float32))
    k0 = k_full * mask
    x_net = torch.randn(B, H, W, generator=g, dtype=torch.complex64)  # some network output
    return x_true, k_full, k0, mask, x_net


def test_output_has_exactly_the_measured_lines():
    _, _, k0, mask, x_net = _setup()
    out = data_consistency(x_net, k0, mask)
    k_out = fft2c(out)
    cols = mask.bool()
    torch.testing.assert_close(k_out[..., cols], k0[..., cols], atol=1e-5, rtol=0)
    # unmeasured columns keep the network's k-space
    torch.testing.assert_close(k_out[..., ~cols], fft2c(x_net)[..., ~cols], atol=1e-5, rtol=0)


def test_idempotent_and_identity_on_consistent_images():
    x_true, _, k0, mask, x_net = _setup(1)
    once = data_consistency(x_net, k0, mask)
    twice = data_consistency(once, k0, mask)
    torch.testing.assert_close(twice, once, atol=1e-5, rtol=0)
    # noise-free DC of the fully sampled image returns it
    torch.testing.assert_close(data_consistency(x_true, k0, mask), x_true, atol=1e-5, rtol=0)


def test_finite_lambda_by_hand():
    _, _, k0, mask, x_net = _setup(2)
    lam = 3.0
    out = data_consistency(x_net, k0, mask, lam=lam)
    k = fft2c_np(x_net.numpy())
    m = mask.numpy()[None, None, :]
    expected = ifft2c_np((1 - m) * k + m * (k + lam * k0.numpy()) / (1 + lam))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)
    # large lambda approaches the noise-free replacement
    far = data_consistency(x_net, k0, mask, lam=1e7)
    torch.testing.assert_close(far, data_consistency(x_net, k0, mask), atol=1e-4, rtol=0)


def test_layer_on_two_channels_and_zero_filled_numpy():
    _, k_full, k0, mask, x_net = _setup(3)
    layer = DataConsistency()
    out = layer(complex_to_channels(x_net), k0, mask)
    assert out.shape == (2, 2, 12, 16)
    ref = complex_to_channels(data_consistency(x_net, k0, mask))
    torch.testing.assert_close(out, ref)
    zf = zero_filled(k_full, mask).numpy()
    np.testing.assert_allclose(zf, ifft2c_np(k_full.numpy() * mask.numpy()), atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 16), (2, 16), (2, 12, 16)])
def test_mask_shapes_broadcast(shape):
    _, _, k0, mask, x_net = _setup(4)
    m = mask.expand(*shape) if len(shape) == 2 else mask.view(1, 1, -1).expand(*shape)
    torch.testing.assert_close(data_consistency(x_net, k0, m), data_consistency(x_net, k0, mask))
