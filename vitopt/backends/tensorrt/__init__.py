"""TensorRT: the prepared ONNX and build manifest, engine building and running where a GPU exists."""
