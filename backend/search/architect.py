"""The architecture step of a search: one class per method (issue #16).

An :class:`Architect` owns the optimiser of the supernet's architecture parameters and makes
one step of them on a batch of the ``train_alpha`` half (first-order DARTS: the weights are
held fixed). A method differs from DARTS by how the supernet mixes operations
(:meth:`backend.search.supernet.SuperNet.mixing_weights`, chosen by ``SuperNet.method``) and
by what its architect adds to the loss:

* ``darts`` (Liu et al., 2019): the loss alone; Adam on the alphas.
* ``pc-darts`` (Xu et al., 2020): the same step on alphas and the edge-normalisation betas; the
  supernet sends 1/K of the channels through the operations.
* ``drnas`` (Chen et al., 2021): the mixing weights are a Dirichlet sample with concentration
  ``softplus(alpha)`` drawn with ``rsample`` (pathwise gradients), plus ``drnas_kl`` x the KL
  divergence from a flat Dirichlet prior (the paper regularises the same way; the concentration
  map differs: the paper's ELU + 1, softplus here).
* ``beta-darts`` (Ye et al., 2022): the loss plus lambda x the beta-decay regulariser, the mean
  over edges of ``logsumexp(alpha)``; its gradient is the softmax itself, so it pulls the
  largest alphas down hardest and keeps one operation from absorbing the edge; lambda rises
  linearly from 0 to ``beta_weight`` over the alpha-training epochs (the schedule is ours).
"""

from __future__ import annotations

import torch

from ..config import SearchConfig
from ..training.data import Batch
from ..training.loop import l1_loss
from .supernet import METHODS, SuperNet, dirichlet_concentration


class Architect:
    """DARTS' first-order architecture step (the base of every method)."""

    method = "darts"

    def __init__(self, model: SuperNet, config: SearchConfig):
        self.model, self.config = model, config
        self.optimiser = torch.optim.Adam(model.arch_parameters(), lr=config.alpha_lr, betas=tuple(config.alpha_betas),
                                          weight_decay=config.alpha_weight_decay)
        self.progress = 0.0  # fraction of the alpha-training epochs done (for schedules)

    def regulariser(self) -> torch.Tensor | None:
        """What the method adds to the loss (None: nothing)."""
        return None

    def step(self, net: torch.nn.Module, batch: Batch, device: torch.device, weight_optimiser) -> float:
        """One step of the architecture parameters on ``batch``; returns the data loss."""
        loss = l1_loss(net, batch, device, self.config.amp)
        reg = self.regulariser()
        weight_optimiser.zero_grad(set_to_none=True)
        self.optimiser.zero_grad(set_to_none=True)
        (loss if reg is None else loss + reg).backward()
        self.optimiser.step()
        return float(loss.detach())

    def state_dict(self) -> dict:
        return self.optimiser.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimiser.load_state_dict(state)


class PCDartsArchitect(Architect):
    method = "pc-darts"


class DrNASArchitect(Architect):
    method = "drnas"

    def regulariser(self) -> torch.Tensor | None:
        weight = self.config.drnas_kl
        if not weight:
            return None
        concentration = dirichlet_concentration(self.model.alphas)
        posterior = torch.distributions.Dirichlet(concentration)
        prior = torch.distributions.Dirichlet(torch.ones_like(concentration))
        return weight * torch.distributions.kl_divergence(posterior, prior).mean()


def beta_decay(alphas: torch.Tensor) -> torch.Tensor:
    """beta-DARTS' regulariser: the mean over edges of ``logsumexp`` of their alphas."""
    return torch.logsumexp(alphas, dim=-1).mean()


class BetaDartsArchitect(Architect):
    method = "beta-darts"

    def regulariser(self) -> torch.Tensor | None:
        weight = self.config.beta_weight * self.progress
        return weight * beta_decay(self.model.alphas) if weight else None


ARCHITECTS: dict[str, type[Architect]] = {a.method: a for a in (Architect, PCDartsArchitect, DrNASArchitect,
                                                                BetaDartsArchitect)}
assert tuple(ARCHITECTS) == METHODS


def make_architect(model: SuperNet, config: SearchConfig) -> Architect:
    return ARCHITECTS[model.method](model, config)
