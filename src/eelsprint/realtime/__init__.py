"""Real-time layer: exporting the real-time graph (pt2, ONNX, TorchScript, TensorRT) and
watching an acquisition folder.
"""

__all__: list[str] = []
