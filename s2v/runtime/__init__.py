"""Serving side of the model: ONNX Runtime only, no torch."""
