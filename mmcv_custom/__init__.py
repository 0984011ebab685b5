"""mmcv-side pieces: the stack check, the compatibility patches, the layer-decay optimizer constructor."""
from .compat import apply_patches, check_stack

check_stack()
apply_patches()

# Registered components (each import registers into mmcv/mmdet registries).
