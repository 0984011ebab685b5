"""deploy.py with the OpenVINO deploy configs (mmdet_custom/deploy/openvino_backend.py): the configs load; a small
Mask R-CNN InternImage (one block per stage, random weights, DCNv3 offsets perturbed so the deformable sampling is
exercised) exports to OpenVINO IR, and OpenVINO float32 equals PyTorch (DCNv3 on the project's own core, not on the
DeformConv rewrite the export traces); a wrong border mode in the conversion is caught by the same comparison; a
missing openvino is one error line naming the extra; the same model with DCNv3 on the project's kernel inside
OpenVINO (the dcnv3op config) equals PyTorch too."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('mmdeploy')

DEPLOY_CONFIGS = Path(__file__).resolve().parents[2] / 'deploy' / 'configs' / 'mmdet'
DEMO_IMAGE = Path(__file__).resolve().parents[2] / 'deploy' / 'demo.jpg'
OPENVINO_CONFIGS = {
    'instance-seg/instance-seg_openvino_static-800x1344.py': (['dets', 'labels', 'masks'], 'fp32'),
    'instance-seg/instance-seg_openvino-bf16_static-800x1344.py': (['dets', 'labels', 'masks'], 'bf16'),
    'detection/detection_openvino_static-800x1344.py': (['dets', 'labels'], 'fp32'),
    'detection/detection_openvino-bf16_static-800x1344.py': (['dets', 'labels'], 'bf16'),
    'instance-seg/instance-seg_openvino-dcnv3op_static-800x1344.py': (['dets', 'labels', 'masks'], 'fp32'),
}
EXPORT_SHAPE = [256, 192]      # (width, height): the small test model at a small static size
DCNV3_LAYERS = 4               # one block per stage
# OpenVINO float32 against PyTorch float32 on the same input (256 px; box differences measured ~5e-5 px). A wrong
# border mode or mask order changes labels and boxes by far more (checked by planting them).
BOX_ATOL, SCORE_ATOL, MASK_ATOL = 1e-2, 1e-4, 1e-3


@pytest.mark.parametrize('name', sorted(OPENVINO_CONFIGS))
def test_openvino_configs_load(name):
    from mmdeploy.utils import get_backend, get_dynamic_axes, get_input_shape, get_ir_config, load_config

    from mmdet_custom.deploy import chosen_op
    from mmdet_custom.deploy.openvino_backend import backend_options
    deploy_cfg = load_config(str(DEPLOY_CONFIGS / name))[0]
    output_names, precision = OPENVINO_CONFIGS[name]
    ir_config = get_ir_config(deploy_cfg)
    assert get_backend(deploy_cfg).value == 'openvino'
    assert ir_config['opset_version'] == 19
    assert chosen_op(deploy_cfg) == ('DCNv3' if 'dcnv3op' in name else 'DeformConv')
    assert ir_config['output_names'] == output_names
    assert get_input_shape(deploy_cfg) == [1344, 800] and not get_dynamic_axes(deploy_cfg)
    assert backend_options(deploy_cfg) == dict(precision=precision, threads=None)
    assert deploy_cfg.codebase_config.post_processing.score_threshold == 0.05


@pytest.mark.parametrize('backend_config, message', [
    (dict(precision='int8'), "backend_config.precision must be one of fp32, bf16, got 'int8'"),
    (dict(threads=0), 'backend_config.threads must be a positive integer or None, got 0'),
])
def test_bad_backend_options_are_named(backend_config, message):
    from mmcv import Config

    from mmdet_custom.deploy.openvino_backend import backend_options
    with pytest.raises(ValueError, match=message.replace('(', r'\(')):
        backend_options(Config(dict(backend_config=dict(type='openvino', **backend_config))))


def test_missing_openvino_names_the_extra(monkeypatch):
    import sys

    from mmdet_custom.deploy import openvino_backend, openvino_runner
    monkeypatch.setitem(sys.modules, 'openvino', None)   # import openvino -> ImportError
    reason = openvino_backend.missing_reason()
    assert reason.startswith('openvino is not installed (the optional `openvino` extra: '
                             'pip install -r requirements/openvino.txt)')
    with pytest.raises(openvino_runner.OpenVINONotInstalled, match='requirements/openvino.txt'):
        openvino_runner.read_model('end2end.xml')


def _deploy_cfg(directory: Path, kit, name: str = 'instance-seg_openvino_static-800x1344.py') -> Path:
    path = directory / f'{Path(name).stem}_test.py'
    source = DEPLOY_CONFIGS / 'instance-seg' / name
    path.write_text(f"_base_ = [{str(source)!r}]\n"
                    f"onnx_config = dict(input_shape={EXPORT_SHAPE!r})\n"
                    f"codebase_config = dict(post_processing=dict(score_threshold={kit.SCORE_THRESHOLD}, "
                    f"keep_top_k={kit.MAX_DETECTIONS}))\n"
                    "backend_config = dict(threads=2)\n")
    return path


@pytest.fixture(scope='module')
def openvino_export(kit, tmp_path_factory):
    pytest.importorskip('openvino', reason='openvino is not installed (pip install -r requirements/openvino.txt)')
    directory = tmp_path_factory.mktemp('openvino_export')
    model_cfg = kit.write_model_config(directory / 'mask_rcnn_internimage_small_test.py', depths=[1, 1, 1, 1])
    checkpoint = kit.perturb_dcnv3_offsets(kit.write_random_checkpoint(model_cfg, directory / 'random.pth'))
    deploy_cfg = _deploy_cfg(directory, kit)
    work_dir = directory / 'work_dir'
    result = kit.run_deploy(str(deploy_cfg), str(model_cfg), str(checkpoint), str(DEMO_IMAGE), '--work-dir',
                            str(work_dir), '--device', 'cpu')
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(deploy_cfg=deploy_cfg, model_cfg=model_cfg, checkpoint=checkpoint, work_dir=work_dir)


def _pytorch_reference(export):
    """The exact input tensor and the detector's end-to-end outputs in PyTorch eager (mmdeploy's rewritten heads for
    OpenVINO), with DCNv3 on its own core: the reference runs with dcnv3_onnx_op='GridSample', under which the
    DeformConv rewrite of the export steps aside."""
    import torch
    from mmdeploy.apis import build_task_processor
    from mmdeploy.core import RewriterContext, patch_model
    from mmdeploy.utils import IR, get_input_shape, load_config

    import mmdet_custom  # noqa: F401
    from mmdet_custom.deploy import apply_export_patches
    apply_export_patches()
    deploy_cfg, model_cfg = load_config(str(export['deploy_cfg']), str(export['model_cfg']))
    deploy_cfg.dcnv3_onnx_op = 'GridSample'
    task_processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    model = task_processor.init_pytorch_model(str(export['checkpoint']))
    data, model_inputs = task_processor.create_input(str(DEMO_IMAGE), get_input_shape(deploy_cfg))
    patched = patch_model(model, cfg=deploy_cfg, backend='openvino', ir=IR.ONNX)
    with RewriterContext(cfg=deploy_cfg, backend='openvino', ir=IR.ONNX, opset=19), torch.no_grad():
        outputs = patched(model_inputs[0], img_metas=data['img_metas'])
    return model_inputs[0].numpy(), [output.numpy() for output in outputs]


def assert_agrees(got, expected):
    """OpenVINO's (dets, labels, masks) equal PyTorch's within the float32 tolerances above."""
    (dets, labels, masks), (torch_dets, torch_labels, torch_masks) = got, expected
    assert torch_dets.shape[1] >= 5, 'too few detections to compare: raise the classifier spread in conftest'
    assert dets.shape == torch_dets.shape
    np.testing.assert_array_equal(labels, torch_labels)
    np.testing.assert_allclose(dets[..., :4], torch_dets[..., :4], atol=BOX_ATOL, rtol=0)
    np.testing.assert_allclose(dets[..., 4], torch_dets[..., 4], atol=SCORE_ATOL, rtol=0)
    np.testing.assert_allclose(masks, torch_masks, atol=MASK_ATOL, rtol=0)


@pytest.fixture(scope='module')
def reference(openvino_export):
    return _pytorch_reference(openvino_export)


@pytest.mark.slow
def test_deploy_writes_ir_with_deformable_convolution(openvino_export):
    import openvino as ov
    work_dir = openvino_export['work_dir']
    for name in ('end2end.onnx', 'end2end.xml', 'end2end.bin', 'output_openvino.jpg', 'output_pytorch.jpg'):
        assert (work_dir / name).is_file(), name
    model = ov.Core().read_model(str(work_dir / 'end2end.xml'))   # plain IR: no extension needed to read it
    deformable = [op for op in model.get_ordered_ops() if op.get_type_name() == 'DeformableConvolution']
    assert len(deformable) == DCNV3_LAYERS
    assert all(op.get_attributes()['bilinear_interpolation_pad'] for op in deformable)
    weights = [op for op in model.get_ordered_ops() if op.get_type_name() == 'Constant']
    assert {op.get_output_element_type(0).get_type_name() for op in weights} >= {'f32'}
    assert 'f16' not in {op.get_output_element_type(0).get_type_name() for op in weights}   # no fp16 compression
    assert [output.get_any_name() for output in model.outputs] == ['dets', 'labels', 'masks']


@pytest.mark.slow
@pytest.mark.parametrize('file_name', ['end2end.xml', 'end2end.onnx'])
def test_openvino_float32_equals_pytorch(openvino_export, reference, file_name):
    from mmdet_custom.deploy.openvino_runner import OpenVINORunner
    image, expected = reference
    assert image.shape == (1, 3, EXPORT_SHAPE[1], EXPORT_SHAPE[0])
    runner = OpenVINORunner(str(openvino_export['work_dir'] / file_name), precision='fp32', threads=2)
    assert_agrees(runner(image), expected)


@pytest.mark.slow
def test_wrong_border_mode_is_caught(openvino_export, reference, monkeypatch):
    """A planted error: the conversion with OpenVINO's default bilinear_interpolation_pad=False (samples within a
    pixel outside the map dropped, not interpolated against zeros) fails the comparison above."""
    from openvino import opset8

    from mmdet_custom.deploy.openvino_runner import OpenVINORunner
    original = opset8.deformable_convolution
    monkeypatch.setattr(opset8, 'deformable_convolution',
                        lambda *args, **kwargs: original(*args, **{**kwargs, 'bilinear_interpolation_pad': False}))
    image, expected = reference
    runner = OpenVINORunner(str(openvino_export['work_dir'] / 'end2end.onnx'), precision='fp32', threads=2)
    with pytest.raises(AssertionError):
        assert_agrees(runner(image), expected)


@pytest.mark.slow
def test_bf16_is_close(openvino_export, reference):
    from mmdet_custom.deploy.openvino_runner import OpenVINORunner
    image, (torch_dets, _, _) = reference
    runner = OpenVINORunner(str(openvino_export['work_dir'] / 'end2end.xml'), precision='bf16', threads=2)
    dets = runner(image)[0]
    assert dets.shape[1] >= 5
    # bf16 keeps ~3 significant digits: the top detection's score, not the exact ranking, is compared.
    assert abs(dets[0, 0, 4] - torch_dets[0, 0, 4]) < 0.05


@pytest.mark.slow
def test_deploy_without_openvino_is_one_clear_line(kit, openvino_export, tmp_path):
    """openvino not importable (a shadow package that fails to import, first on the path): the ONNX file is written,
    then one error line names the extra."""
    shadow = tmp_path / 'shadow' / 'openvino'
    shadow.mkdir(parents=True)
    (shadow / '__init__.py').write_text("raise ModuleNotFoundError('hidden by the test', name='openvino')\n")
    import os
    import subprocess
    import sys
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONPATH=f'{shadow.parent}{os.pathsep}{kit.REPO}')
    work_dir = tmp_path / 'work_dir'
    result = subprocess.run(
        [sys.executable, str(kit.REPO / 'deploy.py'), str(openvino_export['deploy_cfg']),
         str(openvino_export['model_cfg']), str(openvino_export['checkpoint']), str(DEMO_IMAGE), '--work-dir',
         str(work_dir)], capture_output=True, text=True, timeout=600, cwd=str(kit.REPO), env=env)
    assert result.returncode == 1
    lines = kit.error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-2000:]
    assert 'targets openvino' in lines[0] and 'pip install -r requirements/openvino.txt' in lines[0]
    assert (work_dir / 'end2end.onnx').is_file() and not (work_dir / 'end2end.xml').exists()


@pytest.fixture(scope='module')
def dcnv3op_export(kit, openvino_export):
    """The same model and checkpoint through instance-seg_openvino-dcnv3op_static-800x1344.py (DCNv3 on the
    project's kernel inside OpenVINO)."""
    from ops_dcnv3.functions import extension_available
    if not extension_available():
        pytest.skip('ops_dcnv3._C is not built: the OpenVINO DCNv3 op runs the compiled kernel')
    directory = openvino_export['work_dir'].parent
    deploy_cfg = _deploy_cfg(directory, kit, 'instance-seg_openvino-dcnv3op_static-800x1344.py')
    work_dir = directory / 'dcnv3op_work_dir'
    result = kit.run_deploy(str(deploy_cfg), str(openvino_export['model_cfg']), str(openvino_export['checkpoint']),
                            str(DEMO_IMAGE), '--work-dir', str(work_dir), '--device', 'cpu')
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


@pytest.mark.slow
def test_project_kernel_in_openvino_equals_pytorch(dcnv3op_export, reference):
    from mmdet_custom.deploy.openvino_runner import OpenVINORunner, read_model
    assert (dcnv3op_export / 'output_openvino.jpg').is_file()
    types = [op.get_type_name() for op in read_model(str(dcnv3op_export / 'end2end.xml')).get_ordered_ops()]
    assert types.count('DCNv3') == DCNV3_LAYERS and 'DeformableConvolution' not in types
    image, expected = reference
    for file_name in ('end2end.xml', 'end2end.onnx'):
        runner = OpenVINORunner(str(dcnv3op_export / file_name), precision='fp32', threads=2)
        assert_agrees(runner(image), expected)
