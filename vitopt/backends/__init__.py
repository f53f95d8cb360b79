"""One folder per target format: ``exporter.py``, ``runner.py`` and, where the format needs them,
``probe.py`` (what ``vitopt check`` asks), ``validate.py`` (static checks where the runtime is absent)
and helpers of that backend alone. ``vitopt.formats`` is the one table that names them.

Shared by every backend: ``exporter.Exporter`` and ``runner.Runner`` (the contracts) and
``metadata`` (what an artifact stores about itself). A backend may build on another's exporter
(TensorRT's prepared ONNX is an ONNX export) but never imports another backend's runner.
"""
