"""mmcv-side pieces: the stack check, the compatibility patches, the layer-decay optimizer constructor."""
from .compat import apply_patches, check_stack

check_stack()
apply_patches()

# Registered components (each import registers into mmcv/mmdet registries).
from .checkpoint_hook import AtomicCheckpointHook  # noqa: E402
from .custom_layer_decay_optimizer_constructor import CustomLayerDecayOptimizerConstructor  # noqa: E402
from .efficient_ffn import EfficientFFN  # noqa: E402

__all__ = ['AtomicCheckpointHook', 'CustomLayerDecayOptimizerConstructor', 'EfficientFFN', 'apply_patches',
           'check_stack']
