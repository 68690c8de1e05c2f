"""Search spaces and model export: arch string -> torch module -> validated static-shape ONNX.

- ``exporters.spaces``: ``get_space("nb201" | "fbnet")`` -> ``SearchSpace`` (parse/validate/sample/encode,
  build, flops/params, lookup-table units);
- ``exporters.onnx``: ``export_arch``, ``export_module``, ``load_onnx`` -> ``OnnxModel`` with its content hash;
- ``exporters.counting``: FLOPs/params of a built module by hooks; ``exporters.weights``: seeded weights.

Nothing is imported here, so ``import exporters`` stays cheap (torch loads only when a module is built).
"""
