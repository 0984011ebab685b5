"""Export support for this repository's detectors (mmdeploy 0.14 rewriters); imported by export code only.

Importing :mod:`mmdet_custom` does not import this package: the rewriters register into mmdeploy's registries and
are active only inside mmdeploy's export context.
"""
from .dcnv3_deform_conv import apply_dcnv3_deform_conv_rewriter, chosen_op
from .detr_rewriters import apply_detr_rewriters


def apply_export_rewriters() -> None:
    """Every rewriter of this package (idempotent): DINO family export, DCNv3 as DeformConv where chosen."""
    apply_detr_rewriters()
    apply_dcnv3_deform_conv_rewriter()


__all__ = ['apply_dcnv3_deform_conv_rewriter', 'apply_detr_rewriters', 'apply_export_rewriters', 'chosen_op']
