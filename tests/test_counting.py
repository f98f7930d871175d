"""Parameter and MAC counts against hand computation and the paper's Table 1."""

import pytest
import torch
from torch import nn

from backend.models import HAND_A3, Genotype, build_model, count_macs, count_params, model_info
from backend.models.genotype import shipped_genotype_path

HW = 320 * 320


class _Wrap(nn.Module):
    """Give a plain layer stack the registry forward(x, k0, mask)."""

    def __init__(self, *layers):
        super().__init__()
        self.body = nn.Sequential(*layers)

    def forward(self, x, k0, mask):
        return self.body(x)


def test_conv_mac_convention_by_hand():
    H, W = 5, 6
    model = _Wrap(
        nn.Conv2d(2, 4, 3, padding=1),                          # 30*4*(2*9) + 30*4 bias
        nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4, bias=False),  # 30*4*9
        nn.ConvTranspose2d(4, 3, 2, stride=2),                  # 30*4 inputs * 3*4 + 120*3 bias
        nn.ReLU(),
    )
    expected = 30 * 4 * 18 + 30 * 4 + 30 * 4 * 9 + 30 * 4 * 3 * 4 + 120 * 3
    assert count_macs(model, H, W) == expected


def test_count_macs_leaves_model_untouched():
    model = build_model("dccnn", channels=4, blocks=1, cascades=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, 16, 16)
    after = model.state_dict()
    assert all(v.device.type == "cpu" and torch.equal(v, before[k]) for k, v in after.items())


def test_dccnn3_exact_counts_with_and_without_bias():
    # per module: stem 2->32, 3 blocks x 2 convs 32->32, head 32->2, all 3x3 with bias
    weights = 2 * 32 * 9 + 6 * 32 * 32 * 9 + 32 * 2 * 9
    biases = 7 * 32 + 2
    assert 3 * (weights + biases) == 170_022
    with torch.device("meta"):
        model = build_model("dccnn")
    assert count_params(model) == 170_022
    assert count_macs(model) == 3 * (weights + biases) * HW == 17_410_252_800  # paper 17.41G
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.bias = None
    assert count_macs(model) == 17_340_825_600  # REFERENCE: 17.34 G MACs without biases


# (name, blocks, paper params, paper GFLOPs, relative tolerance)
PAPER = [
    ("dccnn", 3, 170.0e3, 17.41, 1e-3),
    ("dccnn", 11, 613.9e3, 62.87, 1e-3),
    ("modl", 3, 56.7e3, 17.41, 1e-3),
    ("modl", 11, 613.9e3 / 3, 62.87, 1e-3),  # Table 1 prints 204.3K: see test below
    ("rdn", 3, 86.79e3, 26.03, 0.03),
    ("rdn", 8, 86.79e3, 68.79, 0.03),
    ("unet", None, 3349e3, 12.17, 0.03),
]


@pytest.mark.parametrize("name, blocks, params, gflops, tol", PAPER)
def test_counts_match_paper_table1(name, blocks, params, gflops, tol):
    info = model_info(name, blocks=blocks)
    assert info["params"] == pytest.approx(params, rel=tol)
    assert info["gflops"] == pytest.approx(gflops, rel=tol)


def test_exact_counts_of_our_models():
    got = {(n, b): model_info(n, blocks=b) for n, b in
           [("modl", 11), ("rdn", 3), ("rdn", 8), ("unet", None)]}
    got["nasn", None] = model_info("nasn", genotype=HAND_A3)
    assert got["modl", 11]["params"] == 204_642  # paper 204.3K (0.17 %, 613.9K / 3 = 204.6K)
    assert got["rdn", 3]["params"] == got["rdn", 8]["params"] == 86_790
    assert got["rdn", 3]["gflops"] == pytest.approx(25.9332096)
    assert got["unet", None] == {"params": 3_348_536, "gflops": pytest.approx(12.1714688)}
    assert got["nasn", None]["params"] == 138_342  # HAND_A3; searched NasN_Knee: 142.3K
    assert got["nasn", None]["gflops"] == pytest.approx(138_342 * HW / 1e9)


def test_shipped_searched_nasn_by_hand():
    """The shipped genotype (2 dil_2, 2 dil_3, 2 skip per cell) counted by hand, C = 32."""
    genotype = Genotype.load(shipped_genotype_path())
    ops = sorted(op for _, op, _ in genotype.edges())
    assert ops == ["dil_2_conv_3x3"] * 2 + ["dil_3_conv_3x3"] * 2 + ["skip_connect"] * 2
    stem, head = 2 * 9 * 32 + 32, 96 * 9 * 2 + 2
    preprocess = (32 * 32 * 2) + (32 * 32 + 96 * 32) + (96 * 32 * 2)  # cells 1, 2, 3
    dil = 9 * 32 + 32 * 32  # depthwise 3x3 + pointwise
    per_module = stem + head + preprocess + 3 * 4 * dil
    info = model_info("nasn")  # the default is the shipped genotype
    assert info["params"] == 3 * per_module == 91_110
    assert info["gflops"] == pytest.approx(info["params"] * HW / 1e9)  # every param is a conv weight used once per pixel


def test_shared_weights_count_params_once_macs_every_time():
    modl, dccnn = model_info("modl"), model_info("dccnn")
    assert modl["gflops"] == dccnn["gflops"] and 3 * modl["params"] == dccnn["params"]
    assert model_info("rdn", blocks=8)["gflops"] > 2.5 * model_info("rdn", blocks=3)["gflops"]
