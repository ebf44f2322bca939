"""Training, evaluation and ONNX export of patchscan's models (the patchscan-train distribution)."""
