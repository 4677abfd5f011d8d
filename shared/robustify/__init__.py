"""Make a supported MLLM a noise-robust base for randomized smoothing: distil its vision tower +
projector so their features of a Gaussian-noised image match the original's of the clean image
(language model frozen). A library: imports torch/transformers and the other libraries
(``shared.smoothing``, ``shared.backends``, ``shared.benchmarks``), no platform module.
"""

from shared.robustify.distil import DistilConfig, TrainingRecord, distil, feature_mse, summarize_losses
from shared.robustify.inputs import DEFAULT_SIGMA_MAX, SigmaSchedule, default_schedule
from shared.robustify.layout import SUPPORTED_LAYOUTS, UnsupportedLayout, VisionPath

__all__ = [
    "DEFAULT_SIGMA_MAX",
    "SUPPORTED_LAYOUTS",
    "DistilConfig",
    "SigmaSchedule",
    "TrainingRecord",
    "UnsupportedLayout",
    "VisionPath",
    "default_schedule",
    "distil",
    "feature_mse",
    "summarize_losses",
]
