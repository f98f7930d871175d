"""DARTS search: the supernet, genotype derivation, the loop, resume after SIGKILL, torchrun."""

import json
import os
import subprocess
import sys

import pytest
import torch

from backend.config import SearchConfig
from backend.fft import channels_to_complex, complex_to_channels, fft2c
from backend.models import Genotype, build_model
from backend.progress import run
from backend.search.search import search
from backend.search.supernet import SuperNet, derive_genotype, edge_offsets, num_edges

from conftest import killed_at_random_moments, uninterrupted_and_resumed


def test_edge_bookkeeping():
    assert num_edges(3) == 2 + 3 + 4 and edge_offsets(3) == [0, 2, 5]
    assert num_edges(4) == 14 and edge_offsets(4) == [0, 2, 5, 9]


def test_derive_genotype_by_hand():
    # space A ops: sep, dil2, dil3, skip, none; 2 nodes -> edges: node1 (in0, in1), node2 (in0, in1, n1)
    w = torch.full((5, 5), 0.1)
    w[0] = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.6])   # strong 'none' is ignored: best real op 0.1
    w[1] = torch.tensor([0.5, 0.1, 0.1, 0.2, 0.1])   # sep
    w[2] = torch.tensor([0.05, 0.05, 0.7, 0.1, 0.1])  # dil3, strongest into node 2
    w[3] = torch.tensor([0.1, 0.1, 0.1, 0.1, 0.6])   # weak
    w[4] = torch.tensor([0.1, 0.1, 0.1, 0.6, 0.1])   # skip from node 1
    g = derive_genotype(w, "A", 2)
    assert g == Genotype("A", ((("sep_conv_3x3", 0), ("sep_conv_3x3", 1)), (("dil_3_conv_3x3", 0), ("skip_connect", 2))))


def test_supernet_parameters_and_dc():
    torch.manual_seed(0)
    net = SuperNet("B", nodes=2, channels=4, cells=1, cascades=2)
    assert "alphas" in net.state_dict() and net.alphas.shape == (5, 5)
    arch, weights = net.arch_parameters(), net.weight_parameters()
    assert len(arch) == 1 and all(p is not net.alphas for p in weights)
    assert len(arch) + len(weights) == len(list(net.parameters()))
    net = net.to(torch.float64).to(torch.float32)  # alphas follow .to()
    assert net.alphas.dtype == torch.float32
    x_true = torch.randn(1, 13, 10, dtype=torch.complex64)
    mask = torch.zeros(10)
    mask[::3] = 1
    k0 = fft2c(x_true) * mask
    out = net(complex_to_channels(torch.fft.ifft2(k0)), k0, mask)
    k_out = fft2c(channels_to_complex(out))
    torch.testing.assert_close(k_out[..., mask.bool()], k0[..., mask.bool()], atol=1e-4, rtol=0)
    out.abs().mean().backward()
    assert net.alphas.grad is not None and net.alphas.grad.abs().sum() > 0


def _tiny(data, **kw):
    base = dict(data=str(data), space="A", nodes=2, channels=4, cells=1, cascades=2, epochs=3,
                steps_per_epoch=3, crop=32, patience=None, min_epochs=0, warmup_epochs=0, max_skip=None,
                device="cpu")
    base.update(kw)
    return SearchConfig(**base)


def test_search_writes_a_usable_genotype(tiny_dataset, tmp_path):
    out = tmp_path / "s"
    summary = run(search(_tiny(tiny_dataset), str(out)))
    g = Genotype.load(out / "genotype.json")
    assert g.to_dict() == summary["genotype"] and g.num_nodes == 2
    build_model("nasn", genotype=g, channels=4, cells=1)  # retraining can use it
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 3 and all(h["alphas_in_sync"] for h in history)
    alphas = json.loads((out / "alphas.json").read_text())
    assert len(alphas["epochs"]) == 3 and len(alphas["epochs"][0]) == num_edges(2)
    assert (out / "cell.png").stat().st_size > 5000 and (out / "alphas.png").stat().st_size > 5000
    assert (out / "signal.png").stat().st_size > 5000


def test_early_stop_when_genotype_is_stable(tiny_dataset, tmp_path):
    # alphas barely move with a tiny alpha lr: the genotype stays the same -> stop after patience
    summary = run(search(_tiny(tiny_dataset, epochs=6, patience=2, min_epochs=0, alpha_lr=1e-9), str(tmp_path / "s")))
    assert summary["stopped_early"] and summary["epochs_run"] == 2


def _cli_search(data, out, *extra):
    return [sys.executable, "-m", "backend", "search", "--data", str(data), "--nodes", "2", "--channels", "4",
            "--cells", "1", "--epochs", "4", "--steps-per-epoch", "4", "--crop", "32", "--device", "cpu", "--warmup-epochs", "1",
            "--out", str(out), "--quiet", *extra]


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_genotype(tiny_dataset, tmp_path):
    ref, killed = uninterrupted_and_resumed(lambda out: _cli_search(tiny_dataset, out), tmp_path, epochs=4)
    assert (ref / "genotype.json").read_text() == (killed / "genotype.json").read_text()
    a = json.loads((ref / "alphas.json").read_text())["epochs"]
    b = json.loads((killed / "alphas.json").read_text())["epochs"]
    assert a == b


@pytest.mark.slow
def test_killed_at_random_moments_gives_the_same_genotype(tiny_dataset, tmp_path):
    ref, killed = killed_at_random_moments(lambda out: _cli_search(tiny_dataset, out), tmp_path, seed=7)
    assert (ref / "genotype.json").read_text() == (killed / "genotype.json").read_text()
    assert json.loads((ref / "alphas.json").read_text())["epochs"] == json.loads((killed / "alphas.json").read_text())["epochs"]


@pytest.mark.slow
def test_torchrun_two_processes_keep_alphas_identical(tiny_dataset, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "backend", "search", "--data", str(tiny_dataset), "--nodes", "2", "--channels", "4",
           "--cells", "1", "--epochs", "2", "--steps-per-epoch", "2", "--crop", "32", "--device", "cpu",
           "--out", str(out), "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 2 and all(h["alphas_in_sync"] for h in history)
    config = json.loads((out / "config.json").read_text())
    assert config["batch_size"] == 2
    starts = [json.loads(l) for l in (out / "events.jsonl").read_text().splitlines() if '"start"' in l]
    assert starts[0]["world"] == 2


def test_skip_cap_replaces_the_weakest_skips():
    # space A, 2 nodes, every edge prefers skip; the cap keeps the strongest skip only
    w = torch.tensor([[0.10, 0.05, 0.05, 0.70, 0.10],
                      [0.20, 0.05, 0.05, 0.60, 0.10],
                      [0.05, 0.30, 0.05, 0.50, 0.10],
                      [0.05, 0.05, 0.05, 0.40, 0.45],
                      [0.05, 0.05, 0.25, 0.55, 0.10]])
    raw = derive_genotype(w, "A", 2)
    assert all(op == "skip_connect" for node in raw.nodes for op, _ in node)
    capped = derive_genotype(w, "A", 2, max_skip=1)
    assert capped.nodes == ((("skip_connect", 0), ("sep_conv_3x3", 1)),
                            (("dil_2_conv_3x3", 0), ("dil_3_conv_3x3", 2)))


def test_warmup_keeps_alphas_fixed(tiny_dataset, tmp_path):
    out = tmp_path / "w"
    run(search(_tiny(tiny_dataset, epochs=2, warmup_epochs=1), str(out)))
    history = json.loads((out / "history.json").read_text())
    assert history[0]["warmup"] and history[0]["loss_alpha"] is None
    assert not history[1]["warmup"] and history[1]["loss_alpha"] > 0
    torch.manual_seed(0)
    initial = SuperNet("A", 2, 4, 1, 2).op_weights().tolist()
    assert history[0]["alphas"] == initial and history[1]["alphas"] != initial
