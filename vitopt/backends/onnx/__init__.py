"""ONNX: the exporter (torch.export, TorchScript fallback, onnxslim) and ONNX Runtime on the CPU."""
