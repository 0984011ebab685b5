"""DCNv3 exported as one custom ONNX node (``mmdet_custom::DCNv3``), run in OpenVINO on this project's own compiled
DCNv3 CPU kernel (``ops_dcnv3``) instead of OpenVINO's DeformableConvolution (a slow reference kernel on the CPU
for grouped deformable convolution). A deploy config opts in with ``dcnv3_onnx_op = 'DCNv3'``.

The node holds DCNv3's core as ``dcnv3_core_pytorch`` defines it: input (N, H, W, C) channels-last, offset
(N, Ho, Wo, G * K * 2) and mask (N, Ho, Wo, G * K) (the softmaxed weights) in DCNv3's own layouts, the geometry as
attributes. Only OpenVINO with :func:`conversion_extension` (``openvino_runner.read_model`` adds it) runs such a
graph: the frontend maps the node to :class:`DCNv3Op` (made by :func:`dcnv3_op_class`), a Python ``openvino.Op``
whose ``evaluate`` calls the compiled kernel on the tensors OpenVINO hands it (``torch.from_numpy``: no copies in;
one copy of the result out). The CPU plugin executes such an op as a reference node, in float32 whatever the
precision hint, on the thread that runs the graph; the kernel uses PyTorch's intra-op threads. Run such a process
with ``OMP_WAIT_POLICY=PASSIVE`` (read when PyTorch loads, so set it in the environment): otherwise PyTorch's OpenMP
threads spin after each kernel call and take cores from OpenVINO's threads (Mask R-CNN-T, bf16, 2 threads: 2.55 s
-> 2.17 s per image; PyTorch's own inference was not slower with it).
"""
from __future__ import annotations

import functools
import warnings

import torch

DOMAIN = 'mmdet_custom'
OP_TYPE = 'DCNv3'
GEOMETRY = ('kernel_h', 'kernel_w', 'stride_h', 'stride_w', 'pad_h', 'pad_w', 'dilation_h', 'dilation_w', 'group',
            'group_channels')
IM2COL_STEP = 256   # the modules' value; the CPU kernel ignores it


class DCNv3CoreONNX(torch.autograd.Function):
    """DCNv3's core: the PyTorch core in eager (the values traced through), one ``mmdet_custom::DCNv3`` node in a
    graph."""

    @staticmethod
    def forward(ctx, input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                dilation_w, group, group_channels, offset_scale):
        from ops_dcnv3.functions import dcnv3_core_pytorch
        return dcnv3_core_pytorch(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                                  dilation_h, dilation_w, group, group_channels, offset_scale)

    @staticmethod
    def symbolic(g, input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
                 dilation_w, group, group_channels, offset_scale):
        values = (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group, group_channels)
        attributes = {f'{name}_i': int(value) for name, value in zip(GEOMETRY, values)}
        output = g.op(f'{DOMAIN}::{OP_TYPE}', input, offset, mask, offset_scale_f=float(offset_scale), **attributes)
        output.setType(input.type().with_sizes([None] * 4))   # (N, Ho, Wo, C): OpenVINO infers the sizes
        return output


def dcnv3_core_custom_node(input, offset, mask, *geometry_and_scale) -> torch.Tensor:
    """DCNv3's core (``dcnv3_core_pytorch``'s arguments) as one ``mmdet_custom::DCNv3`` node when exported."""
    return DCNv3CoreONNX.apply(input, offset, mask, *geometry_and_scale)


def _kernel():
    from ops_dcnv3.functions.dcnv3_func import EXTENSION, load_extension
    extension = load_extension()
    if extension is None:
        raise RuntimeError(EXTENSION.missing_message('the OpenVINO DCNv3 custom op'))
    return extension


def _tensor(array) -> torch.Tensor:
    """A float32 torch view of an OpenVINO tensor's numpy data (a copy only when it is not float32)."""
    import numpy as np
    array = np.asarray(array)
    if array.dtype != np.float32:
        array = array.astype(np.float32)
    with warnings.catch_warnings():   # read-only input buffers: the kernel only reads them
        warnings.simplefilter('ignore', UserWarning)
        return torch.from_numpy(array)


@functools.lru_cache(maxsize=None)
def dcnv3_op_class():
    """The ``openvino.Op`` subclass running DCNv3 on the compiled kernel (made once; imports openvino)."""
    from .openvino_runner import import_openvino
    ov = import_openvino()

    class DCNv3Op(ov.Op):
        class_type_info = ov.DiscreteTypeInfo(OP_TYPE, DOMAIN)

        def __init__(self, inputs=None, attributes: dict | None = None):
            super().__init__(self)
            self.attributes = {name: 0 for name in GEOMETRY}
            self.attributes['offset_scale'] = 1.0
            self.attributes.update(attributes or {})
            if inputs is not None:
                self.set_arguments(inputs)
                self.constructor_validate_and_infer_types()

        def get_type_info(self):
            return DCNv3Op.class_type_info

        def validate_and_infer_types(self):
            offset = self.get_input_partial_shape(1)
            channels = self.attributes['group'] * self.attributes['group_channels']
            shape = ov.PartialShape([offset[0], offset[1], offset[2], channels]) if offset.rank.is_static \
                else ov.PartialShape.dynamic(4)
            self.set_output_type(0, ov.Type.f32, shape)

        def clone_with_new_inputs(self, new_inputs):
            return DCNv3Op(new_inputs, dict(self.attributes))

        def visit_attributes(self, visitor):
            visitor.on_attributes(self.attributes)
            return True

        def has_evaluate(self):
            return True

        def evaluate(self, outputs, inputs):
            input, offset, mask = (_tensor(tensor.data) for tensor in inputs[:3])
            geometry = [int(self.attributes[name]) for name in GEOMETRY]
            result = _kernel().dcnv3_forward(input, offset, mask, *geometry, float(self.attributes['offset_scale']),
                                             IM2COL_STEP, False)
            outputs[0].shape = ov.Shape(list(result.shape))
            torch.from_numpy(outputs[0].data).copy_(result)
            return True

    return DCNv3Op


def conversion_extension():
    """An ONNX-frontend extension: ``mmdet_custom::DCNv3`` -> :class:`DCNv3Op`."""
    from .openvino_runner import import_openvino
    import_openvino()
    from openvino.frontend.onnx import ConversionExtension

    op_class = dcnv3_op_class()

    def convert(node):
        attributes = {name: node.get_attribute(name) for name in GEOMETRY}
        attributes['offset_scale'] = node.get_attribute('offset_scale')
        return op_class([node.get_input(index) for index in range(3)], attributes).outputs()

    return ConversionExtension(OP_TYPE, DOMAIN, convert)


def op_extension():
    """An ``openvino.OpExtension`` for reading IR that holds :class:`DCNv3Op` nodes."""
    from .openvino_runner import import_openvino
    return import_openvino().OpExtension(dcnv3_op_class())
