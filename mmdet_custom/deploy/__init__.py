"""Export, in one home: mmdeploy 0.14 made to work on today's torch (``mmdeploy_compat``), this repository's
rewriters (``detr_rewriters``: the DINO family; ``dcnv3_deform_conv``: DCNv3 as ONNX DeformConv where a deploy config
asks), the export steps ``deploy.py`` runs (``steps``) and the OpenVINO runner (``openvino_runner``).

Importing :mod:`mmdet_custom` does not import this package, and importing this package patches nothing: the patches
and rewriters register into mmdeploy's registries when applied (:func:`apply_export_patches`) and are active only
inside mmdeploy's export context.
"""
from .dcnv3_deform_conv import apply_dcnv3_deform_conv_rewriter, chosen_op
from .detr_rewriters import apply_detr_rewriters
from .mmdeploy_compat import apply_mmdeploy_patches


def apply_export_rewriters() -> None:
    """Every rewriter of this package (idempotent): DINO family export, DCNv3 as DeformConv where chosen."""
    apply_detr_rewriters()
    apply_dcnv3_deform_conv_rewriter()


def apply_export_patches() -> None:
    """Everything an export needs (idempotent), in this order: mmdeploy checked and patched (``MMDeployError``, a
    ``UserError``, names the fix), then this package's rewriters."""
    apply_mmdeploy_patches()
    apply_export_rewriters()


__all__ = ['apply_dcnv3_deform_conv_rewriter', 'apply_detr_rewriters', 'apply_export_patches',
           'apply_export_rewriters', 'apply_mmdeploy_patches', 'chosen_op']
