"""OpenVINO: IR export (PyTorch frontend, ONNX fallback), the CPU runner and the check probe."""
