"""Deriving the cell from a trained supernet, and whether the alphas carry any signal (issue #16).

* :func:`diagnostics`: per edge the entropy of its operation weights (nats; ``log(#ops)`` =
  uniform) and the margin between its best and second operation (``none`` excluded, as in the
  derivation), plus whether the derived cell carries a signal.
* :func:`perturb_select`: perturbation-based selection (Wang et al., "Rethinking architecture
  selection in differentiable NAS", ICLR 2021), without their fine-tuning between decisions:
  for every edge, the operation whose removal (its weight set to zero, the others kept) raises
  the supernet's validation loss most; then for every node, the two inputs whose removal
  (the whole edge set to zero) raises it most.
"""

from __future__ import annotations

import math

import torch

from ..models import SPACES, Genotype
from ..training.data import Batch
from ..training.loop import l1_loss
from .supernet import SuperNet, edge_offsets


def diagnostics(weights: torch.Tensor, space: str, genotype: Genotype, margin_threshold: float,
                alpha_steps: int) -> dict:
    """Entropy and margin per edge, the chosen edges' margins, and ``no_signal``: True when
    the alphas never trained (``alpha_steps == 0``) or every chosen edge's margin is below
    ``margin_threshold``."""
    names = SPACES[space]
    keep = [k for k, n in enumerate(names) if n != "none"]
    w = weights.detach().double().cpu()
    entropy = [float(-(row.clamp_min(1e-30) * row.clamp_min(1e-30).log()).sum()) for row in w]
    margins = []
    for row in w:
        top = sorted((float(row[k]) for k in keep), reverse=True)
        margins.append(top[0] - top[1])
    nodes = genotype.num_nodes
    chosen = [edge_offsets(nodes)[i] + j for i, node in enumerate(genotype.nodes) for _, j in node]
    chosen_margins = [margins[e] for e in chosen]
    no_signal = alpha_steps == 0 or max(chosen_margins) < margin_threshold
    reason = ("the alphas were never trained (all epochs were weights-only warm-up)" if alpha_steps == 0 else
              f"every chosen edge's best operation leads the second by less than {margin_threshold:g}"
              if no_signal else "")
    return {"edge_entropy": entropy, "edge_margin": margins, "chosen_margin": chosen_margins,
            "uniform_entropy": math.log(len(names)), "no_signal": no_signal, "no_signal_reason": reason}


@torch.no_grad()
def _val_loss(net: torch.nn.Module, batches: list[Batch], device: torch.device, amp: bool) -> float:
    return sum(float(l1_loss(net, b, device, amp)) for b in batches) / len(batches)


@torch.no_grad()
def perturb_select(model: SuperNet, batches: list[Batch], device: torch.device, amp: bool = False) -> tuple[Genotype, dict]:
    """The genotype by perturbation (see the module docstring) and the measured loss increases."""
    names = SPACES[model.space]
    candidates = [k for k, n in enumerate(names) if n != "none"]
    was_training = model.training
    model.eval()
    try:
        base_w = model.mixing_weights().detach()
        base_e = model.edge_weights()
        base_e = None if base_e is None else base_e.detach()
        model.weight_override, model.edge_override = base_w, base_e
        base = _val_loss(model, batches, device, amp)
        op_gain = torch.zeros(base_w.shape)
        for e in range(base_w.shape[0]):
            for k in candidates:
                w = base_w.clone()
                w[e, k] = 0
                model.weight_override = w
                op_gain[e, k] = _val_loss(model, batches, device, amp) - base
        best_op = [max(candidates, key=lambda k: (float(op_gain[e, k]), -k)) for e in range(base_w.shape[0])]
        # each edge keeps only its chosen operation (at its weight); then inputs are compared
        w = torch.zeros_like(base_w)
        for e, k in enumerate(best_op):
            w[e, k] = base_w[e, k]
        model.weight_override = w
        chosen_base = _val_loss(model, batches, device, amp)
        edge_gain = torch.zeros(base_w.shape[0])
        for e in range(base_w.shape[0]):
            w2 = w.clone()
            w2[e] = 0
            model.weight_override = w2
            edge_gain[e] = _val_loss(model, batches, device, amp) - chosen_base
        nodes = []
        for i, offset in enumerate(edge_offsets(model.nodes)):
            inputs = sorted(range(i + 2), key=lambda j: (-float(edge_gain[offset + j]), j))[:2]
            nodes.append(tuple((names[best_op[offset + j]], j) for j in sorted(inputs)))
    finally:
        model.weight_override = model.edge_override = None
        model.train(was_training)
    return Genotype(model.space, tuple(nodes)), {"base_loss": base, "op_gain": op_gain.tolist(),
                                                  "edge_gain": edge_gain.tolist()}
