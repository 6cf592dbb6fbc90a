"""Inference layer: training, the uncertainty integral, distillation, recalibration,
posterior draws, metrics and the CPU runtime of the real-time graph.
"""

__all__: list[str] = []
