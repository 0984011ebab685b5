"""Run ``deploy.py``'s ONNX file, or the OpenVINO IR it converts it to, in OpenVINO (optional: ``pip install -r
requirements/openvino.txt`` or the ``openvino`` extra; nothing imports openvino unless this module's functions are
called, and then a missing openvino is one error naming the extra).

The DCNv3 layers must be exported as ONNX ``DeformConv`` (the ``*_deformconv.py`` deploy configs, opset 19):
OpenVINO's ONNX frontend refuses that node as exported, so :func:`deform_conv_extension` maps it to OpenVINO's
``DeformableConvolution-8`` with ``bilinear_interpolation_pad=True``, which is DCNv3's sampling (a sample within one
pixel outside the map interpolates against zeros; with the flag false OpenVINO drops such samples, which differs at
the borders). OpenVINO's CPU plugin defaults to bf16 on CPUs with AMX, so the precision hint is always set here, and
so is the thread count.

    runner = OpenVINORunner('work_dirs/ov/end2end.onnx', precision='fp32', threads=2)   # or end2end.xml
    outputs = runner(image)          # the model's outputs, as numpy arrays, in its order

The ``*_openvino_*`` deploy configs make ``deploy.py`` write that IR (:func:`convert_to_ir`: ``end2end.xml`` and
``end2end.bin``, float32 weights) next to ``end2end.onnx``.
"""
from __future__ import annotations

import os

import numpy as np

PRECISIONS = {'fp32': 'f32', 'bf16': 'bf16'}
MISSING = 'openvino is not installed (the optional `openvino` extra: pip install -r requirements/openvino.txt)'


class OpenVINONotInstalled(ImportError):
    """openvino is needed and not importable; the message names the extra that installs it."""


def import_openvino():
    """The ``openvino`` module, or :class:`OpenVINONotInstalled` naming the extra."""
    try:
        import openvino
    except ImportError as error:
        raise OpenVINONotInstalled(f'{MISSING}: {error}') from None
    return openvino


def deform_conv_extension():
    """An OpenVINO frontend ``ConversionExtension``: ONNX ``DeformConv`` -> ``DeformableConvolution-8``."""
    import_openvino()
    from openvino import opset8
    from openvino.frontend import ConversionExtension

    def convert(node):
        data, weight, offset = (node.get_input(i) for i in range(3))
        count = node.get_input_size()
        bias = node.get_input(3) if count > 3 else None
        mask = node.get_input(4) if count > 4 else None
        kernel = len(node.get_attribute('kernel_shape'))
        pads = node.get_attribute('pads', [0] * 2 * kernel)
        output = opset8.deformable_convolution(
            data, offset, weight, strides=node.get_attribute('strides', [1] * kernel), pads_begin=pads[:kernel],
            pads_end=pads[kernel:], dilations=node.get_attribute('dilations', [1] * kernel), mask=mask,
            group=node.get_attribute('group', 1), deformable_group=node.get_attribute('offset_group', 1),
            bilinear_interpolation_pad=True)
        if bias is not None:
            shape = opset8.constant(np.array([1, -1] + [1] * kernel, dtype=np.int64))
            output = opset8.add(output, opset8.reshape(bias, shape, special_zero=False))
        return [output.output(0)]

    return ConversionExtension('DeformConv', convert)


def read_model(model_file: str):
    """The ONNX file (DeformConv through :func:`deform_conv_extension`) or OpenVINO IR (``.xml``, its ``.bin``
    beside it) as an ``openvino.Model``."""
    from .dcnv3_openvino_op import conversion_extension, op_extension
    ov = import_openvino()
    core = ov.Core()
    core.add_extension(deform_conv_extension())
    core.add_extension(conversion_extension())   # mmdet_custom::DCNv3 (dcnv3_onnx_op='DCNv3') in ONNX
    core.add_extension(op_extension())           # and in IR
    return core.read_model(model_file)


def convert_to_ir(onnx_file: str, xml_file: str | None = None) -> str:
    """Convert the ONNX file to OpenVINO IR (``xml_file``, default: the ONNX file's name with ``.xml``; the weights
    in the ``.bin`` beside it, kept in float32: no fp16 compression); returns the ``.xml`` path."""
    ov = import_openvino()
    xml_file = xml_file or os.path.splitext(onnx_file)[0] + '.xml'
    from .dcnv3_openvino_op import conversion_extension
    model = ov.convert_model(onnx_file, extension=[deform_conv_extension(), conversion_extension()])
    ov.save_model(model, xml_file, compress_to_fp16=False)
    return xml_file


def compile_model(model, precision: str = 'fp32', threads: int | None = None):
    """An ``openvino.CompiledModel`` on the CPU with the precision hint and the thread count set explicitly
    (``threads`` default: ``OMP_NUM_THREADS``, else every core)."""
    ov = import_openvino()
    import openvino.properties as props
    import openvino.properties.hint as hints

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    threads = threads or int(os.environ.get('OMP_NUM_THREADS', 0)) or os.cpu_count()
    config = {hints.inference_precision: PRECISIONS[precision], props.inference_num_threads: threads,
              hints.performance_mode: hints.PerformanceMode.LATENCY}
    return ov.Core().compile_model(model, 'CPU', config)


class OpenVINORunner:
    """``deploy.py``'s ONNX file or OpenVINO IR compiled for the CPU; ``runner(*inputs)`` returns its outputs as
    numpy arrays, in the model's order (:attr:`output_names` names them)."""

    def __init__(self, model_file: str, precision: str = 'fp32', threads: int | None = None) -> None:
        self.model = read_model(model_file)
        self.compiled = compile_model(self.model, precision, threads)
        self.request = self.compiled.create_infer_request()
        self.output_names = [output.get_any_name() for output in self.compiled.outputs]

    def __call__(self, *inputs) -> list[np.ndarray]:
        results = self.request.infer([np.ascontiguousarray(np.asarray(x)) for x in inputs])
        return [results[output] for output in self.compiled.outputs]
