"""FlashInternImage backbone (detection version): InternImage with DCNv4 as the token mixer.

The family shares InternImage's stem, downsampling, MLP, norms, block and stage structure, so this file only adds
what differs: the DCNv4 core (``ops_dcnv4.modules.DCNv4``, sequence layout ``(N, H*W, C)`` with the spatial shape
passed along), the bias switches of the DCN output projection and of the MLP's fc2, and the released sizes. Module
and parameter names reproduce the released FlashInternImage checkpoints' keys (docs/checkpoints.md).

Importable with torch (+ timm) alone; registration into mmdet's BACKBONES happens in ``backbones/__init__.py``.
Construction timm-style: ``FlashInternImage.from_variant('T', out_indices=(1, 2, 3))``.
``layer_scale=None`` works, the spatial shape is passed to every DCNv4 call (non-square maps), and
``init_weights()`` without a checkpoint keeps DCNv4's zero-initialised ``offset_mask``; how this differs from the
original: docs/deviations.md ("FlashInternImage (DCNv4)").
"""
from __future__ import annotations

import torch

from ops_dcnv4.modules import DCNv4

from .intern_image import InternImage

# Hyper-parameters of the released detection backbones (docs/model_zoo.md). All use mlp_ratio 4.0, LN, GELU, a 3x3
# DCNv4 kernel, 16 channels per group and linear drop-path; `drop_path_rate` is the value of the 1x configs.
FLASH_INTERN_IMAGE_VARIANTS: dict[str, dict] = {
    'T': dict(channels=64, depths=[4, 4, 18, 4], groups=[4, 8, 16, 32], layer_scale=1.0, offset_scale=1.0,
              post_norm=False, dw_kernel_size=None, dcn_output_bias=False, mlp_fc2_bias=False, drop_path_rate=0.2),
    'S': dict(channels=80, depths=[4, 4, 21, 4], groups=[5, 10, 20, 40], layer_scale=1.0, offset_scale=1.0,
              post_norm=True, dw_kernel_size=3, dcn_output_bias=False, mlp_fc2_bias=False, drop_path_rate=0.3),
    'B': dict(channels=112, depths=[4, 4, 21, 4], groups=[7, 14, 28, 56], layer_scale=1.0, offset_scale=0.5,
              post_norm=True, dw_kernel_size=3, dcn_output_bias=False, mlp_fc2_bias=False, drop_path_rate=0.3),
    'L': dict(channels=160, depths=[5, 5, 22, 5], groups=[10, 20, 40, 80], layer_scale=1.0, offset_scale=2.0,
              post_norm=True, dw_kernel_size=3, dcn_output_bias=True, mlp_fc2_bias=True, drop_path_rate=0.4),
}


class ChannelsLastDCNv4(DCNv4):
    """DCNv4 taking and returning InternImage's channels-last ``(N, H, W, C)`` maps (same parameters and keys).

    It accepts the keyword arguments InternImage's block passes to its core op. Like the original FlashInternImage,
    the DCNv4 core gets no activation, norm or centre-feature-scale from the block: ``act_layer``, ``norm_layer``
    and ``center_feature_scale`` only shape DCNv3 (and the stage norm), so they are ignored here.
    """

    def __init__(self, channels: int = 64, kernel_size: int = 3, stride: int = 1, pad: int = 1, dilation: int = 1,
                 group: int = 4, offset_scale: float = 1.0, dw_kernel_size: int | None = None,
                 output_bias: bool = True, act_layer: str = 'GELU', norm_layer: str = 'LN',
                 center_feature_scale: bool = False):
        super().__init__(channels=channels, kernel_size=kernel_size, stride=stride, pad=pad, dilation=dilation,
                         group=group, offset_scale=offset_scale, dw_kernel_size=dw_kernel_size,
                         output_bias=output_bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """:param input: (N, H, W, C). :return: (N, H, W, C)."""
        N, H, W, C = input.shape
        return super().forward(input.reshape(N, H * W, C), (H, W)).reshape(N, H, W, C)


class FlashInternImage(InternImage):
    """FlashInternImage backbone returning the NCHW features of the stages in ``out_indices`` (strides 4..32).

    Arguments are the original's: InternImage's, with the same defaults, except ``core_op='DCNv4'`` (the only
    choice), ``offset_scale=0.5`` and the two bias switches ``mlp_fc2_bias`` / ``dcn_output_bias`` (both off; L
    turns them on). ``FLASH_INTERN_IMAGE_VARIANTS`` holds the released sizes. ``with_cp``, ``frozen_stages`` and
    checkpoint loading through ``init_cfg`` (``state_dict``/``model_ema``/``model`` wrappers, ``module.``/
    ``backbone.`` prefixes, classifier heads dropped) are InternImage's.
    """

    core_ops = {'DCNv4': ChannelsLastDCNv4}
    variants = FLASH_INTERN_IMAGE_VARIANTS  # FlashInternImage.from_variant('T'..'L')
    checkpoint_wrapper_keys = ('state_dict', 'model_ema', 'model')  # the original's order

    def __init__(self, core_op: str = 'DCNv4', offset_scale: float = 0.5, mlp_fc2_bias: bool = False,
                 dcn_output_bias: bool = False, **kwargs):
        if 'use_dcn_v4_op' in kwargs:  # an InternImage (DCNv3) switch: DCNv4 is already the core op here
            raise TypeError("FlashInternImage got an unexpected keyword argument 'use_dcn_v4_op'")
        super().__init__(core_op=core_op, offset_scale=offset_scale, mlp_fc2_bias=bool(mlp_fc2_bias),
                         dcn_output_bias=bool(dcn_output_bias), **kwargs)

    def _block_options(self, kwargs: dict) -> dict:
        """The bias switches of the MLP's fc2 and of DCNv4's output projection (``output_bias``)."""
        return dict(mlp_fc2_bias=kwargs.pop('mlp_fc2_bias'),
                    core_kwargs=dict(output_bias=kwargs.pop('dcn_output_bias')))
