"""Multi-model pipelines: registered models chained detect -> crop -> classify.

- :mod:`.spec`: the YAML spec (pydantic), and its pinned form stored on a registered version;
- :mod:`.validate`: do the stages fit (task per role), one line naming the field;
- :mod:`.runner`: the in-process pipeline on two :class:`~visionyard.runtime.InferenceSession`
  objects, and the crop geometry;
- :mod:`.registry`: register a spec as a version of a model, resolve it for a server.

Layers: ``spec``, ``validate`` and ``runner`` import only ``contract`` and ``runtime`` (the
registry's gate and ``evaluate`` may use them); ``registry`` sits above ``registry/`` and below
``serving/``, which resolves served pipelines through it.
"""
