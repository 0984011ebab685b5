"""DCNv3 exported as the standard ONNX ``DeformConv`` operator (opset 19), an option of the deploy configs.

The default export writes DCNv3's core as ``GridSample`` plus element-wise ops (opset 16): portable (TensorRT >= 8.5,
OpenVINO, ONNX Runtime). Runtimes that implement ``DeformConv`` (ONNX Runtime's CPU provider does) run the core as
one node instead, which is faster there. A deploy config opts in with::

    onnx_config = dict(opset_version=19)
    dcnv3_onnx_op = 'DeformConv'          # default: 'GridSample'

(the ``*_onnxruntime_dynamic_deformconv.py`` configs of deploy/configs/mmdet/detection and instance-seg set both).
A third choice, ``dcnv3_onnx_op = 'DCNv3'``, writes one custom ``mmdet_custom::DCNv3`` node per layer, which only
OpenVINO with this project's extension runs, on the project's own CPU kernel (:mod:`.dcnv3_openvino_op`).

DCNv3's core (docs/dcnv3_operator.md) is a depthwise deformable convolution whose weights are all ones and whose
modulation is the mask; as ``DeformConv``: weight ``(C, 1, kernel_h, kernel_w)`` of ones, ``group = C``,
``offset_group = G`` (channel c uses offset group c // group_channels, DCNv3's group-major channel order), the input
and output channels-first, and the offsets reordered from DCNv3's layout (point k = i * kernel_h + j with i the
column index outer, (x, y) pairs) to DeformConv's (kernel rows outer, (y, x) pairs). DCNv3 scales the regular
kernel displacement by ``offset_scale`` as well as the learned offset; DeformConv's displacement is fixed, so the
difference ``(offset_scale - 1) * displacement`` is added to the offsets.
"""
from __future__ import annotations

import torch

# At import, not inside the traced forward: torchvision's first import runs an op that tracing cannot record.
from torchvision.ops import deform_conv2d

OPTION = 'dcnv3_onnx_op'
CHOICES = ('GridSample', 'DeformConv', 'DCNv3')
DEFORM_CONV_MIN_OPSET = 19


class _DeformConvONNX(torch.autograd.Function):
    """Depthwise all-ones deformable convolution: torchvision's ``deform_conv2d`` in eager (the semantics of ONNX
    DeformConv), one ``DeformConv`` node in a graph."""

    @staticmethod
    def forward(ctx, input, offset, mask, channels, kernel, stride, padding, dilation, offset_group):
        weight = input.new_ones(channels, 1, *kernel)
        return deform_conv2d(input, offset, weight, mask=mask, stride=stride, padding=padding, dilation=dilation)

    @staticmethod
    def symbolic(g, input, offset, mask, channels, kernel, stride, padding, dilation, offset_group):
        weight = g.op('Constant', value_t=torch.ones(channels, 1, *kernel, dtype=torch.float32))
        bias = g.op('Constant', value_t=torch.zeros(channels, dtype=torch.float32))
        return g.op('DeformConv', input, weight, offset, bias, mask, dilations_i=list(dilation), group_i=channels,
                    kernel_shape_i=list(kernel), offset_group_i=offset_group,
                    pads_i=[padding[0], padding[1], padding[0], padding[1]], strides_i=list(stride))


def kernel_displacement(kernel_h: int, kernel_w: int, dilation_h: int, dilation_w: int) -> torch.Tensor:
    """(kernel_h, kernel_w, 2): the (y, x) pixel displacement of each kernel point from the window centre, rows
    outer (DeformConv's order)."""
    half_h = (dilation_h * (kernel_h - 1)) // 2
    half_w = (dilation_w * (kernel_w - 1)) // 2
    y = torch.arange(kernel_h, dtype=torch.float32) * dilation_h - half_h
    x = torch.arange(kernel_w, dtype=torch.float32) * dilation_w - half_w
    return torch.stack(torch.meshgrid(y, x, indexing='ij'), -1)


def dcnv3_core_deform_conv(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_h: int,
                           kernel_w: int, stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int,
                           dilation_w: int, group: int, group_channels: int, offset_scale: float) -> torch.Tensor:
    """DCNv3's core (same arguments and result as ``ops_dcnv3.functions.dcnv3_core_pytorch``) through DeformConv."""
    batch = input.shape[0]
    _, height_out, width_out, _ = offset.shape
    # (N, Ho, Wo, G, i = column, j = row, (x, y)) -> (N, G, row, column, (y, x), Ho, Wo)
    offset = offset.reshape(batch, height_out, width_out, group, kernel_w, kernel_h, 2)
    offset = torch.stack((offset[..., 1], offset[..., 0]), -1).permute(0, 3, 5, 4, 6, 1, 2)
    displacement = kernel_displacement(kernel_h, kernel_w, dilation_h, dilation_w).to(offset)
    offset = offset * offset_scale + ((offset_scale - 1) * displacement)[None, None, :, :, :, None, None]
    offset = offset.reshape(batch, group * kernel_h * kernel_w * 2, height_out, width_out)
    mask = mask.reshape(batch, height_out, width_out, group, kernel_w, kernel_h).permute(0, 3, 5, 4, 1, 2)
    mask = mask.reshape(batch, group * kernel_h * kernel_w, height_out, width_out)
    output = _DeformConvONNX.apply(input.permute(0, 3, 1, 2), offset, mask, group * group_channels,
                                   (kernel_h, kernel_w), (stride_h, stride_w), (pad_h, pad_w),
                                   (dilation_h, dilation_w), group)
    return output.permute(0, 2, 3, 1)


def chosen_op(deploy_cfg) -> str:
    """The deploy config's DCNv3 export operator; one clear error for a bad value or a too-old opset."""
    from mmdeploy.utils import get_ir_config

    choice = deploy_cfg.get(OPTION, 'GridSample')
    if choice not in CHOICES:
        raise ValueError(f'deploy config: {OPTION} must be one of {CHOICES}, got {choice!r}')
    opset = get_ir_config(deploy_cfg).get('opset_version', 11)
    if choice == 'DeformConv' and opset < DEFORM_CONV_MIN_OPSET:
        raise ValueError(f'deploy config: {OPTION}=DeformConv needs onnx_config.opset_version >= '
                         f'{DEFORM_CONV_MIN_OPSET}, got {opset}')
    return choice


_registered = False
LAYER_NORMALIZATION_MIN_OPSET = 17


def _patch_layer_norm_symbolic_from_opset17() -> None:
    """Symptom: a graph exported at opset 19 fails ``onnx.checker`` (``Unrecognized attribute: axes for operator
    ReduceMean``): mmdeploy 0.14's ``layer_norm`` symbolic writes ReduceMean with an ``axes`` attribute, which opset
    18 turned into an input. From opset 17 on, torch's own symbolic (one LayerNormalization node) is used; below,
    mmdeploy's is kept (the default opset-16 exports are unchanged)."""
    from mmdeploy.pytorch.ops.layer_norm import layer_norm__default
    from torch.onnx import symbolic_opset17

    from .mmdeploy_compat import _exported_opset, _replace_symbolic

    def layer_norm__opset_aware(ctx, g, input, normalized_shape, weight, bias, eps, cudnn_enable):
        if _exported_opset(ctx) >= LAYER_NORMALIZATION_MIN_OPSET:
            return symbolic_opset17.layer_norm(g, input, normalized_shape, weight, bias, eps, cudnn_enable)
        return layer_norm__default(ctx, g, input, normalized_shape, weight, bias, eps, cudnn_enable)

    _replace_symbolic('layer_norm', layer_norm__opset_aware, is_pytorch=True,
                      arg_descriptors=['v', 'is', 'v', 'v', 'f', 'i'])


def apply_dcnv3_deform_conv_rewriter() -> None:
    """Register the rewriter of DCNv3's PyTorch core used in export (idempotent); it changes the graph only when
    the deploy config chooses ``DeformConv``."""
    global _registered
    if _registered:
        return
    from mmdeploy.core import FUNCTION_REWRITER

    _patch_layer_norm_symbolic_from_opset17()   # the DeformConv option exports at opset 19

    @FUNCTION_REWRITER.register_rewriter('ops_dcnv3.modules.dcnv3.DCNv3_pytorch._core')
    def dcnv3__core__deform_conv(ctx, self, x, offset, mask):
        choice = chosen_op(ctx.cfg)
        if choice == 'DCNv3':
            from .dcnv3_openvino_op import dcnv3_core_custom_node
            return dcnv3_core_custom_node(x, offset, mask, *self._geometry())
        if choice != 'DeformConv':
            return ctx.origin_func(self, x, offset, mask)
        return dcnv3_core_deform_conv(x, offset, mask, self.kernel_size, self.kernel_size, self.stride,
                                      self.stride, self.pad, self.pad, self.dilation, self.dilation, self.group,
                                      self.group_channels, self.offset_scale)

    _registered = True
