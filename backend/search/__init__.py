"""Differentiable architecture search (DARTS, first order) of the NasN cell inside the DC cascade.

* :mod:`.supernet`: mixed operations, the search cell and the supernet with its alphas;
* :mod:`.search`: the alternating optimisation (a generator of events), early stopping,
  checkpoints and resume;
* :mod:`.plots`: the derived cell as a graph and the alpha evolution per edge.
"""
