"""Operations, NasN cells, baselines, the model registry and weights files (small tensors)."""

import json
import pickle

import pytest
import torch
from torch import nn

from backend.errors import InputError
from backend.fft import channels_to_complex, complex_to_channels, fft2c, ifft2c
from backend.models import (
    HAND_A3, MODEL_NAMES, OPS, Genotype, build_model, count_params, load_model, save_weights,
)
from backend.models.nasn import Cell

SIZES = [(17, 20), (24, 24)]
SMALL = {  # fast configurations of every registry model
    "nasn": dict(channels=4, cascades=2, cells=2),
    "dccnn": dict(channels=4, cascades=2, blocks=2),
    "modl": dict(channels=4, cascades=2, blocks=2),
    "rdn": dict(channels=4, cascades=2, blocks=2),
    "unet": dict(channels=4),
}


def small_model(name, seed=0):
    torch.manual_seed(seed)
    return build_model(name, **SMALL[name])


def measurement(h, w, batch=2, seed=1):
    """Zero-filled image (B, 2, H, W), measured k-space k0 (B, H, W) and a (B, W) mask."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.complex(torch.randn(batch, h, w, generator=gen),
                          torch.randn(batch, h, w, generator=gen))
    mask = (torch.rand(batch, w, generator=gen) < 0.4).float()
    mask[:, w // 2] = 1
    k0 = fft2c(image) * mask[:, None, :]
    return complex_to_channels(ifft2c(k0)), k0, mask


# -- operations -------------------------------------------------------------------------------
@pytest.mark.parametrize("name, params", [
    ("sep_conv_3x3", 2 * (32 * 9 + 32 * 32)),
    ("dil_2_conv_3x3", 32 * 9 + 32 * 32),
    ("dil_3_conv_3x3", 32 * 9 + 32 * 32),
    ("conv_9x1_1x9", 32 * 9 + 32 * 9 + 32 * 32),
    ("skip_connect", 0),
    ("none", 0),
])
def test_op_parameter_counts(name, params):
    assert count_params(OPS[name](32)) == params


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("h, w", [(17, 20), (24, 24), (5, 7)])
def test_ops_keep_shape(name, h, w):
    x = torch.randn(2, 3, h, w)
    y = OPS[name](3)(x)
    assert y.shape == x.shape
    if name == "none":
        assert torch.count_nonzero(y) == 0
    if name == "skip_connect":
        assert torch.equal(y, x)


def test_ops_have_no_bias_or_norm():
    for name, factory in OPS.items():
        for module in factory(4).modules():
            assert not isinstance(module, (nn.BatchNorm2d, nn.InstanceNorm2d)), name
            if isinstance(module, nn.Conv2d):
                assert module.bias is None, name


# -- NasN -------------------------------------------------------------------------------------
def test_cell_channels_and_nasn_parameter_count():
    cell = Cell(HAND_A3, 32, 32, 96)
    assert cell(torch.randn(1, 32, 9, 8), torch.randn(1, 96, 9, 8)).shape == (1, 96, 9, 8)
    # by hand, one module at C = 32: stem 2->32 (+bias), head 96->2 (+bias), 1x1 preprocessing
    # (32+32, 96+32, 96+96 inputs -> 32), 3 cells x (4 sep_conv_3x3 + 2 skips)
    stem, head = 2 * 32 * 9 + 32, 96 * 2 * 9 + 2
    pre = (32 + 32 + 32 + 96 + 96 + 96) * 32
    ops = 3 * 4 * 2 * (32 * 9 + 32 * 32)
    assert count_params(build_model("nasn", genotype=HAND_A3)) == 3 * (stem + head + pre + ops)
    assert 3 * (stem + head + pre + ops) == 138_342


def test_nasn_node_count_follows_genotype():
    two = Genotype("B", [[["conv_9x1_1x9", 0], ["skip_connect", 1]],
                         [["dil_2_conv_3x3", 2], ["sep_conv_3x3", 0]]])
    model = build_model("nasn", genotype=two, channels=4, cascades=1, cells=2)
    assert model.recon[0].head.in_channels == 8
    x, k0, mask = measurement(11, 10, batch=1)
    assert model(x, k0, mask).shape == x.shape


# -- every registry model ---------------------------------------------------------------------
@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("h, w", SIZES)
def test_forward_shape_and_data_consistency(name, h, w):
    model = small_model(name)
    x, k0, mask = measurement(h, w)
    out = model(x, k0, mask)
    assert out.shape == x.shape and out.dtype == x.dtype
    if name != "unet":  # cascades end with DC: measured lines kept exactly
        k_out = fft2c(channels_to_complex(out))
        sampled = mask[:, None, :].expand_as(k0).bool()
        torch.testing.assert_close(k_out[sampled], k0[sampled], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradients_reach_every_parameter(name):
    model = small_model(name)
    x, k0, mask = measurement(17, 20)
    loss = (model(x, k0, mask) - torch.randn_like(x)).abs().mean()
    loss.backward()
    for key, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, key


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_deterministic_with_seed(name):
    x, k0, mask = measurement(17, 20)
    out1 = small_model(name, seed=3)(x, k0, mask)
    out2 = small_model(name, seed=3)(x, k0, mask)
    assert torch.equal(out1, out2)


def test_unet_accepts_single_mask_and_ignores_k_space():
    model = small_model("unet")
    x, k0, mask = measurement(17, 20)
    assert torch.equal(model(x, k0, mask), model(x, torch.zeros_like(k0), mask[0]))


def test_unet_is_scale_and_shift_equivariant():
    """Standardised inside (fastMRI's normalize_instance): the output follows the input's
    intensity scale and offset instead of guessing them from instance-normalised features."""
    torch.manual_seed(0)
    model = small_model("unet").eval()
    x, k0, mask = measurement(24, 20)
    with torch.no_grad():
        out = model(x, k0, mask)
        torch.testing.assert_close(model(3.7 * x, k0, mask), 3.7 * out, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x + 0.25, k0, mask), out + 0.25, rtol=1e-4, atol=1e-5)


def test_weight_sharing():
    modl, dccnn = build_model("modl"), build_model("dccnn")
    assert len(modl.recon) == 1 and len(dccnn.recon) == 3
    assert 3 * count_params(modl) == count_params(dccnn)
    assert count_params(build_model("rdn", blocks=3)) == count_params(build_model("rdn", blocks=8))


@pytest.mark.parametrize("kwargs, expected", [
    (dict(name="resnet"), "unknown model 'resnet'"),
    (dict(name="dccnn", genotype=HAND_A3), "only applies to 'nasn'"),
    (dict(name="unet", blocks=3), "'blocks' does not apply to 'unet'"),
    (dict(name="nasn", cascades=0), "cascades must be a positive integer"),
    (dict(name="nasn", genotype={"space": "A"}), "must be a Genotype"),
])
def test_build_model_errors(kwargs, expected):
    with pytest.raises(InputError, match=expected):
        build_model(**kwargs)


def test_config_defaults():
    from backend.models.genotype import default_genotype, shipped_genotype_path

    config = build_model("nasn").config
    assert (config.genotype, config.cascades, config.channels, config.cells) == (default_genotype(), 3, 32, 3)
    assert default_genotype() == Genotype.load(shipped_genotype_path()) != HAND_A3
    assert build_model("rdn").config.blocks == 3
    assert build_model("unet").config.cascades is None


# -- weights files ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nasn", "modl"])
def test_weights_round_trip(tmp_path, name):
    model = small_model(name, seed=5)
    path = save_weights(model, tmp_path / f"{name}.safetensors", {"epoch": 7})
    sidecar = json.loads((tmp_path / f"{name}.json").read_text())
    assert sidecar["name"] == name and sidecar["meta"] == {"epoch": 7}
    assert sidecar["cascades"] == 2 and sidecar["channels"] == 4
    loaded, meta = load_model(path)
    assert meta == {"epoch": 7} and loaded.config == model.config and not loaded.training
    x, k0, mask = measurement(17, 20)
    assert torch.equal(loaded(x, k0, mask), model.eval()(x, k0, mask))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{name}.json", f"{name}.safetensors"]


def test_missing_sidecar_uses_embedded_description(tmp_path):
    path = save_weights(small_model("rdn"), tmp_path / "rdn.safetensors")
    (tmp_path / "rdn.json").unlink()
    assert load_model(path)[0].config == small_model("rdn").config


def _edit_sidecar(path, **changes):
    sidecar = path.with_suffix(".json")
    data = json.loads(sidecar.read_text())
    data.update(changes)
    sidecar.write_text(json.dumps(data))


def test_mismatch_names_keys_and_shapes(tmp_path):
    path = save_weights(small_model("dccnn"), tmp_path / "w.safetensors")
    _edit_sidecar(path, blocks=3)
    with pytest.raises(InputError, match=r"missing: recon\.0\.body\.2\.conv1\.weight") as info:
        load_model(path)
    assert info.value.path == str(path) and "'dccnn'" in info.value.problem
    _edit_sidecar(path, blocks=2, channels=8)
    with pytest.raises(InputError, match=r"shape mismatch: recon\.0\.stem\.weight \(4, 2, 3, 3\) "
                                         r"!= \(8, 2, 3, 3\)"):
        load_model(path)
    _edit_sidecar(path, channels=4, blocks=1)
    with pytest.raises(InputError, match=r"8 unexpected: recon\.0\.body\.1\.conv1\.bias"):
        load_model(path)


def test_bad_files_are_refused(tmp_path):
    path = save_weights(small_model("unet"), tmp_path / "u.safetensors")
    _edit_sidecar(path, name="resnet")
    with pytest.raises(InputError, match="unknown model 'resnet'") as info:
        load_model(path)
    assert info.value.path == str(path.with_suffix(".json"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(InputError, match="not a valid safetensors"):
        load_model(corrupt)
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "absent.safetensors")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling would create the marker file
        return (open, (str(self.marker), "w"))


def test_pickle_payload_refused_and_plain_pt_accepted(tmp_path):
    model = small_model("dccnn")
    save_weights(model, tmp_path / "w.safetensors")
    good = tmp_path / "w.pt"
    torch.save(model.state_dict(), good)  # reads the sidecar w.json
    assert load_model(good)[0].config == model.config

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"recon.0.stem.weight": _Payload(marker)}, protocol=2))
    (tmp_path / "evil.json").write_text((tmp_path / "w.json").read_text())
    with pytest.raises(InputError, match="weights_only"):
        load_model(evil)
    assert not marker.exists()
