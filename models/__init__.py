"""Torch models, training, ONNX export and offline evaluation."""
