"""Networks of napari-nascsmri: search-space operations, genotypes, NasN, baselines, counting
and weights files.

Public API::

    OPS, SPACES                                   # ops.py: operation factories, search spaces
    Genotype, HAND_A3, GENOTYPES                  # genotype.py: cell architecture as data
    MODEL_NAMES, build_model, ModelConfig         # registry.py: the one model registry
    count_params, count_macs, model_info          # counting.py: the paper's counts
    save_weights, load_model, shipped_weights     # weights.py: safetensors + JSON sidecar

Every model: ``forward(x (B, 2, H, W), k0 complex (B, H, W), mask (W,) or (B, W))
-> (B, 2, H, W)``.
"""

from .counting import count_macs, count_params, model_info
from .genotype import GENOTYPES, HAND_A3, Genotype
from .ops import OPS, SPACES
from .registry import MODEL_NAMES, ModelConfig, build_from_config, build_model, model_config
from .weights import load_model, save_weights, shipped_weights

__all__ = [
    "OPS", "SPACES", "Genotype", "HAND_A3", "GENOTYPES", "MODEL_NAMES", "ModelConfig",
    "build_model", "build_from_config", "model_config", "count_params", "count_macs",
    "model_info", "save_weights", "load_model", "shipped_weights",
]
