"""Search methods (PC-DARTS, DrNAS, beta-DARTS), diagnostics and perturbation selection (issue #16).

References: hand computations (the beta-decay gradient is softmax / edges; a channel shuffle
of 0..C-1; a Dirichlet's mean), torch.distributions (the Dirichlet's KL), and the search's own
uninterrupted run for resume.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from backend.config import SearchConfig
from backend.models import Genotype, build_model
from backend.progress import run
from backend.search.architect import ARCHITECTS, BetaDartsArchitect, beta_decay, make_architect
from backend.search.search import reselect, search
from backend.search.selection import diagnostics, perturb_select
from backend.search.supernet import METHODS, MixedOp, SuperNet, channel_shuffle, edge_offsets, num_edges

from conftest import uninterrupted_and_resumed
from test_search import _cli_search, _tiny


def test_every_method_has_an_architect():
    assert tuple(ARCHITECTS) == METHODS == ("darts", "pc-darts", "drnas", "beta-darts")


def test_beta_decay_gradient_is_the_softmax_over_the_edges():
    torch.manual_seed(0)
    alphas = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    beta_decay(alphas).backward()
    expected = torch.softmax(alphas.detach(), dim=-1) / 7
    torch.testing.assert_close(alphas.grad, expected)
    # and its value by hand
    value = sum(torch.log(torch.exp(row).sum()) for row in alphas.detach()) / 7
    assert abs(beta_decay(alphas).item() - value.item()) < 1e-12


def test_beta_darts_weight_rises_linearly():
    model = SuperNet("A", 2, 4, 1, 1, method="beta-darts")
    arch = make_architect(model, SearchConfig(beta_weight=2.0))
    assert isinstance(arch, BetaDartsArchitect)
    arch.progress = 0.0
    assert arch.regulariser() is None
    arch.progress = 0.25
    assert abs(arch.regulariser().item() - 0.5 * beta_decay(model.alphas).item()) < 1e-6


def test_channel_shuffle_by_hand():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


def test_partial_channels_are_the_first_share_and_deterministic():
    torch.manual_seed(1)
    op = MixedOp("A", 8, partial=4)
    assert all(p.shape[0] in (2, 1) or p.shape[1] in (2, 1) for p in op.parameters())  # ops built at C/K = 2
    x = torch.randn(2, 8, 9, 9)
    w = torch.softmax(torch.randn(5), 0)
    out = op(x, w)
    assert torch.equal(out, op(x, w))
    # before the shuffle: channels 0-1 mixed, channels 2-7 passed as they are
    unshuffled = torch.cat([op._mix(x[:, :2], w), x[:, 2:]], 1)
    torch.testing.assert_close(out, channel_shuffle(unshuffled, 4))
    with pytest.raises(ValueError, match="divide"):
        MixedOp("A", 6, partial=4)


def test_pc_darts_edge_normalisation_is_a_softmax_per_node():
    model = SuperNet("A", 3, 8, 1, 1, method="pc-darts")
    with torch.no_grad():
        model.betas.copy_(torch.arange(float(num_edges(3))))
    e = model.edge_weights()
    for i, o in enumerate(edge_offsets(3)):
        part = e[o:o + i + 2]
        assert abs(part.sum().item() - 1) < 1e-6
        torch.testing.assert_close(part, torch.softmax(torch.arange(float(o), o + i + 2), 0))
    assert [p.shape for p in model.arch_parameters()] == [model.alphas.shape, model.betas.shape]


def test_drnas_dirichlet_is_reparameterised():
    """Samples average to the Dirichlet's mean, and the pathwise gradient of the sample mean
    equals the gradient of the analytic mean ``c / sum(c)``, ``c = softplus(alpha)``."""
    torch.manual_seed(2)
    model = SuperNet("A", 2, 4, 1, 1, method="drnas").train()
    with torch.no_grad():
        model.alphas.copy_(torch.randn_like(model.alphas))
    c = torch.nn.functional.softplus(model.alphas.detach()) + 1e-4
    mean = c / c.sum(-1, keepdim=True)
    samples = torch.stack([model.mixing_weights() for _ in range(4000)])
    torch.testing.assert_close(samples.mean(0), mean, atol=0.02, rtol=0)
    assert samples.std(0).min() > 0.01  # random while training ...
    model.eval()
    torch.testing.assert_close(model.mixing_weights(), mean)  # ... its mean otherwise
    model.train()
    g = torch.zeros(5)
    g[1] = 1
    stoch = torch.autograd.grad(torch.stack([model.mixing_weights()[0] @ g for _ in range(4000)]).mean(),
                                model.alphas)[0][0]
    cc = torch.nn.functional.softplus(model.alphas) + 1e-4
    exact = torch.autograd.grad((cc[0] / cc[0].sum())[1], model.alphas)[0][0]
    torch.testing.assert_close(stoch, exact, atol=0.02, rtol=0.2)
    # the KL regulariser is torch's Dirichlet KL to the flat prior
    arch = make_architect(model, SearchConfig(drnas_kl=0.5))
    kl = torch.distributions.kl_divergence(torch.distributions.Dirichlet(cc), torch.distributions.Dirichlet(torch.ones_like(cc)))
    assert abs(arch.regulariser().item() - 0.5 * kl.mean().item()) < 1e-6


def test_diagnostics_by_hand():
    w = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2],
                      [0.1, 0.1, 0.1, 0.1, 0.6], [0.3, 0.29, 0.21, 0.1, 0.1], [0.2] * 5])
    g = Genotype("A", ((("sep_conv_3x3", 0), ("sep_conv_3x3", 1)), (("sep_conv_3x3", 0), ("sep_conv_3x3", 1))))
    d = diagnostics(w, "A", g, 0.02, alpha_steps=10)
    assert [round(m, 6) for m in d["edge_margin"]] == [0.3, 0.0, 0.0, 0.01, 0.0]  # 'none' excluded
    assert abs(d["edge_entropy"][1] - math.log(5)) < 1e-6 and d["uniform_entropy"] == math.log(5)
    assert d["chosen_margin"] == d["edge_margin"][:2] + d["edge_margin"][2:4] and not d["no_signal"]
    flat = diagnostics(torch.full((5, 5), 0.2), "A", g, 0.02, alpha_steps=10)
    assert flat["no_signal"] and "less than 0.02" in flat["no_signal_reason"]
    assert diagnostics(w, "A", g, 0.02, alpha_steps=0)["no_signal"]


@pytest.mark.parametrize("method", ["pc-darts", "drnas", "beta-darts"])
def test_each_method_searches_and_its_cell_trains(tiny_dataset, tmp_path, method):
    out = tmp_path / method
    summary = run(search(_tiny(tiny_dataset, method=method, channels=8, epochs=2, alpha_lr=3e-2), str(out)))
    g = Genotype.load(out / "genotype.json")
    build_model("nasn", genotype=g, channels=4, cells=1)
    history = json.loads((out / "history.json").read_text())
    assert len(history[-1]["edge_margin"]) == num_edges(2) and "no_signal" in summary
    assert history[-1]["alphas"] != history[0]["alphas"]


def test_warmup_only_search_warns_of_no_signal(tiny_dataset, tmp_path):
    summary = run(search(_tiny(tiny_dataset, epochs=1, warmup_epochs=1), str(tmp_path / "w")))
    assert summary["no_signal"] and "never trained" in summary["no_signal_reason"]


def test_perturbation_selection_picks_what_the_loss_says(tiny_dataset, tmp_path):
    out = tmp_path / "p"
    summary = run(search(_tiny(tiny_dataset, epochs=2, select="perturb"), str(out)))
    selection = json.loads((out / "selection.json").read_text())
    g = Genotype.load(out / "genotype.json")
    assert g.to_dict() == summary["genotype"] == selection["genotype"]
    # every chosen operation is the one whose removal raised the loss most on its edge
    names = ["sep_conv_3x3", "dil_2_conv_3x3", "dil_3_conv_3x3", "skip_connect"]
    for i, node in enumerate(g.nodes):
        for op, j in node:
            gains = selection["op_gain"][edge_offsets(2)[i] + j][:4]
            assert names[max(range(4), key=lambda k: (gains[k], -k))] == op


def test_reselect_after_an_argmax_search_equals_a_perturb_search(tiny_dataset, tmp_path):
    """The post-hoc selection of a finished argmax search gives what the same search with
    ``select="perturb"`` chose, and leaves the argmax run's files as they were."""
    perturbed = tmp_path / "p"
    run(search(_tiny(tiny_dataset, epochs=2, select="perturb"), str(perturbed)))
    argmax = tmp_path / "a"
    run(search(_tiny(tiny_dataset, epochs=2), str(argmax)))
    before = {f.name: f.read_bytes() for f in argmax.iterdir()}
    genotype, selection = reselect(str(argmax))
    expected = json.loads((perturbed / "selection.json").read_text())
    assert genotype.to_dict() == expected["genotype"]
    torch.testing.assert_close(torch.tensor(selection["op_gain"]), torch.tensor(expected["op_gain"]), rtol=1e-5, atol=1e-7)
    assert {f.name: f.read_bytes() for f in argmax.iterdir()} == before


@pytest.mark.slow
def test_drnas_resumes_after_sigkill_to_the_same_alphas(tiny_dataset, tmp_path):
    ref, killed = uninterrupted_and_resumed(lambda out: _cli_search(tiny_dataset, out, "--method", "drnas"),
                                            tmp_path, epochs=4)
    a = json.loads((ref / "alphas.json").read_text())["epochs"]
    assert a == json.loads((killed / "alphas.json").read_text())["epochs"]
    assert (ref / "genotype.json").read_text() == (killed / "genotype.json").read_text()
