from . import backbones, dense_heads, detectors, necks, utils  # noqa: F401  (registers the modules)
