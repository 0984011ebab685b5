"""mmcv-side pieces: the stack check, the compatibility patches, the command line of the entry points,
the atomic checkpoint hook, the training-curves hook and the layer-decay optimizer constructor.

One module per concern: ``stack_check`` (a broken install becomes one line naming the fix), ``torch_compat``
(mmcv/mmdet on today's torch, applied here), ``numpy_compat`` (mmcv/mmdet on numpy 1.24+ and numpy 2, applied
here), ``autocast_compat`` (mmcv's ops under mixed precision, applied here), ``cli`` (the command line:
``UserError``, ``run_cli``, the checks of the entry points' inputs). mmdeploy's patches live with the export code
(``mmdet_custom.deploy``), the CPU RoIAlign route with its op (``ops_roialign.mmcv_route``, installed here).
"""
from .autocast_compat import apply_patches as apply_autocast_patches
from .numpy_compat import apply_patches as apply_numpy_patches
from .stack_check import check_stack
from .torch_compat import apply_patches

check_stack()
apply_patches()
apply_numpy_patches()
apply_autocast_patches()

from ops_roialign.mmcv_route import patch_mmcv_roi_align_cpu  # noqa: E402

patch_mmcv_roi_align_cpu()   # multi-threaded CPU RoIAlign, where ops_roialign is built

# Registered components (each import registers into mmcv/mmdet registries).
from .checkpoint_hook import AtomicCheckpointHook  # noqa: E402
from .custom_layer_decay_optimizer_constructor import CustomLayerDecayOptimizerConstructor  # noqa: E402
from .training_curves import TrainingCurvesHook  # noqa: E402

__all__ = ['AtomicCheckpointHook', 'CustomLayerDecayOptimizerConstructor', 'TrainingCurvesHook', 'apply_numpy_patches',
           'apply_patches', 'check_stack']
