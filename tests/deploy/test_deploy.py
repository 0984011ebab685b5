"""deploy.py end to end: Mask R-CNN InternImage-T (random weights, 256 px) exported to ONNX Runtime on the CPU and
checked against PyTorch; the TensorRT deploy config up to its ONNX file; bad inputs.

DINO export is not covered here (the DINO detector is being written separately).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('mmdeploy')
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

DEPLOY_CONFIGS = Path(__file__).resolve().parents[2] / 'deploy' / 'configs' / 'mmdet'
DEMO_IMAGE = Path(__file__).resolve().parents[2] / 'deploy' / 'demo.jpg'
ORT_DYNAMIC = DEPLOY_CONFIGS / 'instance-seg' / 'instance-seg_onnxruntime_dynamic.py'
TRT_DYNAMIC = DEPLOY_CONFIGS / 'instance-seg' / 'instance-seg_tensorrt_dynamic-320x320-1344x1344.py'
DCNV3_LAYERS_T = 4 + 4 + 18 + 4   # one DCNv3 (one GridSample) per InternImage-T block


def _deploy_cfg_with_threshold(kit, source, directory):
    """The deploy config with the test model's score threshold and detection cap."""
    path = directory / f'{source.stem}_test.py'
    path.write_text(f"_base_ = [{str(source)!r}]\n"
                    f"codebase_config = dict(post_processing=dict(score_threshold={kit.SCORE_THRESHOLD}, "
                    f"keep_top_k={kit.MAX_DETECTIONS}))\n")
    return path


@pytest.fixture(scope='module')
def test_image(tmp_path_factory):
    """A crop of another shape than the export image: the dynamic ONNX file must serve it."""
    import mmcv
    image = mmcv.imread(str(DEMO_IMAGE))
    path = tmp_path_factory.mktemp('images') / 'crop.jpg'
    mmcv.imwrite(image[100:420, 20:500], str(path))   # 320 x 480 (landscape; the demo image is portrait)
    return path


@pytest.fixture(scope='module')
def ort_export(kit, tmp_path_factory, test_image):
    directory = tmp_path_factory.mktemp('ort_export')
    model_cfg = kit.write_model_config(directory / 'mask_rcnn_internimage_t_test.py')
    checkpoint = kit.write_random_checkpoint(model_cfg, directory / 'random.pth')
    deploy_cfg = _deploy_cfg_with_threshold(kit, ORT_DYNAMIC, directory)
    work_dir = directory / 'work_dir'
    result = kit.run_deploy(str(deploy_cfg), str(model_cfg), str(checkpoint), str(DEMO_IMAGE), '--work-dir',
                        str(work_dir), '--device', 'cpu', '--dump-info', '--test-img', str(test_image))
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(deploy_cfg=deploy_cfg, model_cfg=model_cfg, checkpoint=checkpoint, work_dir=work_dir)


def test_deploy_writes_onnx_sdk_info_and_pictures(ort_export):
    work_dir = ort_export['work_dir']
    for name in ('end2end.onnx', 'deploy.json', 'pipeline.json', 'detail.json', 'output_onnxruntime.jpg',
                 'output_pytorch.jpg'):
        assert (work_dir / name).is_file(), name
    deploy_info = json.loads((work_dir / 'deploy.json').read_text())
    assert deploy_info['models'][0]['net'] == 'end2end.onnx'


def test_onnx_graph_is_standard_opset16_with_gridsample_dcnv3(ort_export):
    model = onnx.load(str(ort_export['work_dir'] / 'end2end.onnx'))
    onnx.checker.check_model(model)
    assert {entry.domain: entry.version for entry in model.opset_import}.get('', None) == 16
    custom = sorted({f'{node.domain}::{node.op_type}' for node in model.graph.node
                     if node.domain not in ('', 'ai.onnx')})
    assert custom == [], custom
    op_types = [node.op_type for node in model.graph.node]
    assert op_types.count('GridSample') == DCNV3_LAYERS_T
    assert 'RoiAlign' in op_types and 'NonMaxSuppression' in op_types
    inputs = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
              for value in model.graph.input}
    assert inputs == {'input': ['batch', 3, 'height', 'width']}


def _pytorch_end2end(ort_export, image):
    """The detector in PyTorch eager, with mmdeploy's end-to-end head (same post-processing as the ONNX graph)
    and DCNv3 on the compiled CPU kernel; plus the exact input tensor."""
    import torch
    from mmdeploy.apis import build_task_processor
    from mmdeploy.core import RewriterContext, patch_model
    from mmdeploy.utils import IR, load_config

    deploy_cfg, model_cfg = load_config(str(ort_export['deploy_cfg']), str(ort_export['model_cfg']))
    task_processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    model = task_processor.init_pytorch_model(str(ort_export['checkpoint']))
    data, model_inputs = task_processor.create_input(str(image), None)
    patched = patch_model(model, cfg=deploy_cfg, backend='onnxruntime', ir=IR.ONNX)
    with RewriterContext(cfg=deploy_cfg, backend='onnxruntime', ir=IR.ONNX, opset=16), torch.no_grad():
        dets, labels, masks = patched(model_inputs[0], img_metas=data['img_metas'])
    return model_inputs[0].numpy(), dets.numpy(), labels.numpy(), masks.numpy()


@pytest.mark.slow
def test_stock_onnxruntime_matches_pytorch(mmdeploy_stack, ort_export, test_image):
    image, torch_dets, torch_labels, torch_masks = _pytorch_end2end(ort_export, test_image)
    # The 320x480 crop at the 256 px test scale is 192x256; the export image was 256x224: dynamic axes at work.
    assert image.shape[2:] == (192, 256)
    # A stock session: no custom-op library registered.
    session = ort.InferenceSession(str(ort_export['work_dir'] / 'end2end.onnx'), providers=['CPUExecutionProvider'])
    ort_dets, ort_labels, ort_masks = session.run(['dets', 'labels', 'masks'], {'input': image})

    assert torch_dets.shape[1] >= 5, 'too few detections to compare: raise the classifier spread in conftest'
    assert ort_dets.shape == torch_dets.shape
    np.testing.assert_array_equal(ort_labels, torch_labels)
    np.testing.assert_allclose(ort_dets[..., :4], torch_dets[..., :4], atol=0.5)     # pixels of a 256 px input
    np.testing.assert_allclose(ort_dets[..., 4], torch_dets[..., 4], atol=2e-3)      # scores
    agreement = ((ort_masks > 0.5) == (torch_masks > 0.5)).mean()
    assert agreement > 0.98, agreement


@pytest.fixture(scope='module')
def small_model(kit, tmp_path_factory):
    """Same architecture with one block per stage: for tests that only need a valid export."""
    directory = tmp_path_factory.mktemp('small_model')
    model_cfg = kit.write_model_config(directory / 'mask_rcnn_internimage_small_test.py', depths=[1, 1, 1, 1])
    checkpoint = kit.write_random_checkpoint(model_cfg, directory / 'random.pth')
    return dict(model_cfg=model_cfg, checkpoint=checkpoint, directory=directory)


@pytest.fixture(scope='module')
def tensorrt_export(kit, small_model):
    work_dir = small_model['directory'] / 'trt_work_dir'
    result = kit.run_deploy(str(TRT_DYNAMIC), str(small_model['model_cfg']), str(small_model['checkpoint']),
                        str(DEMO_IMAGE), '--work-dir', str(work_dir), '--device', 'cpu')
    return result, work_dir


def test_tensorrt_config_loads_with_upstream_values():
    from mmdeploy.utils import get_backend_config, get_ir_config, load_config
    deploy_cfg = load_config(str(TRT_DYNAMIC))[0]
    ir_config, backend_config = get_ir_config(deploy_cfg), get_backend_config(deploy_cfg)
    assert ir_config['opset_version'] == 16 and ir_config['output_names'] == ['dets', 'labels', 'masks']
    assert backend_config['type'] == 'tensorrt'
    assert backend_config['common_config'] == dict(fp16_mode=False, max_workspace_size=1 << 30)
    assert backend_config['model_inputs'][0]['input_shapes']['input'] == dict(
        min_shape=[1, 3, 320, 320], opt_shape=[1, 3, 800, 1344], max_shape=[1, 3, 1344, 1344])
    assert deploy_cfg.codebase_config.post_processing.export_postprocess_mask is False


@pytest.mark.slow
def test_tensorrt_config_writes_onnx_with_its_dynamic_axes(tensorrt_export):
    _, work_dir = tensorrt_export
    model = onnx.load(str(work_dir / 'end2end.onnx'))
    shapes = {value.name: {index: d.dim_param for index, d in enumerate(value.type.tensor_type.shape.dim)
                           if d.dim_param}
              for value in list(model.graph.input) + list(model.graph.output)}
    declared = {'input': {0: 'batch', 2: 'height', 3: 'width'}, 'dets': {0: 'batch', 1: 'num_dets'},
                'labels': {0: 'batch', 1: 'num_dets'}, 'masks': {0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'}}
    assert set(shapes) == set(declared)
    for name, axes in declared.items():
        # Every declared axis is dynamic under its name (an exporter-named axis may come on top: the last axis of
        # dets, the output of mmdeploy's TensorRT NMS plugin, whose shape the exporter cannot infer).
        assert {index: shapes[name].get(index) for index in axes} == axes, (name, shapes[name])
        assert not set(shapes[name].values()) - set(axes.values()) - {shapes[name].get(2) if name == 'dets' else None}
    op_types = {node.op_type for node in model.graph.node}
    assert 'GridSample' in op_types
    # No DCNv3 plugin; the custom nodes left are mmdeploy's own TensorRT plugins (NMS, RoIAlign, top-k, anchors).
    custom = {node.op_type for node in model.graph.node if node.domain not in ('', 'ai.onnx')}
    assert custom <= {'TRTBatchedNMS', 'MMCVRoiAlign', 'MMCVMultiLevelRoiAlign', 'GridPriorsTRT', 'GatherTopk'}, custom
    assert not any('dcn' in op.lower() for op in custom)


@pytest.mark.slow
def test_backend_not_installed_is_one_clear_line(kit, tensorrt_export):
    result, work_dir = tensorrt_export
    assert result.returncode == 1
    lines = kit.error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-2000:]
    assert 'tensorrt' in lines[0] and 'not installed' in lines[0] and str(work_dir / 'end2end.onnx') in lines[0]


def test_checkpoint_of_another_model_is_one_clear_line(kit, small_model, tmp_path):
    other_cfg = kit.write_model_config(tmp_path / 'other.py', depths=[1, 1, 2, 1])   # one more block in stage 2
    other_checkpoint = kit.write_random_checkpoint(other_cfg, tmp_path / 'other.pth')
    result = kit.run_deploy(str(ORT_DYNAMIC), str(small_model['model_cfg']), str(other_checkpoint), str(DEMO_IMAGE),
                        '--work-dir', str(tmp_path / 'work_dir'))
    assert result.returncode == 1
    lines = kit.error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-2000:]
    assert f'checkpoint {other_checkpoint} does not match model_cfg' in lines[0]
    assert 'unexpected (e.g. backbone.levels.2.blocks.1.' in lines[0]
    assert not (tmp_path / 'work_dir' / 'end2end.onnx').exists()


def test_missing_file_is_one_clear_line(kit, small_model, tmp_path):
    result = kit.run_deploy(str(ORT_DYNAMIC), str(small_model['model_cfg']), str(tmp_path / 'absent.pth'),
                        str(DEMO_IMAGE))
    assert result.returncode == 1
    expected = f'deploy.py: error: checkpoint: file not found: {tmp_path / "absent.pth"}'
    assert kit.error_lines(result.stderr) == [expected]


def test_unknown_backend_in_deploy_config_is_one_clear_line(kit, small_model, tmp_path):
    deploy_cfg = tmp_path / 'bad_backend.py'
    deploy_cfg.write_text(f"_base_ = [{str(DEPLOY_CONFIGS / '_base_' / 'base_static.py')!r}]\n"
                          "backend_config = dict(type='no-such-backend')\n")
    result = kit.run_deploy(str(deploy_cfg), str(small_model['model_cfg']), str(small_model['checkpoint']),
                        str(DEMO_IMAGE), '--work-dir', str(tmp_path / 'work_dir'))
    assert result.returncode == 1
    lines = kit.error_lines(result.stderr)
    assert len(lines) == 1 and f'deploy_cfg: {deploy_cfg}' in lines[0], result.stderr[-2000:]


ORT_CONFIGS = {
    'detection/detection_onnxruntime_static.py': (['dets', 'labels'], False),
    'detection/detection_onnxruntime_dynamic.py': (['dets', 'labels'], True),
    'instance-seg/instance-seg_onnxruntime_static.py': (['dets', 'labels', 'masks'], False),
    'instance-seg/instance-seg_onnxruntime_dynamic.py': (['dets', 'labels', 'masks'], True),
}


@pytest.mark.parametrize('name', sorted(ORT_CONFIGS))
def test_onnxruntime_configs_load(name):
    from mmdeploy.utils import get_backend, get_dynamic_axes, get_ir_config, load_config
    deploy_cfg = load_config(str(DEPLOY_CONFIGS / name))[0]
    output_names, dynamic = ORT_CONFIGS[name]
    ir_config = get_ir_config(deploy_cfg)
    assert get_backend(deploy_cfg).value == 'onnxruntime'
    assert ir_config['opset_version'] == 16 and ir_config['output_names'] == output_names
    assert bool(get_dynamic_axes(deploy_cfg)) == dynamic
    assert deploy_cfg.codebase_config.post_processing.score_threshold == 0.05


@pytest.mark.slow
def test_static_detection_config_exports_boxes_only(kit, small_model, tmp_path):
    """The boxes-only static config on a boxes-only model (the small model without its mask branch): a fixed input
    shape, outputs dets and labels, run in a stock session."""
    model_cfg = tmp_path / 'faster_rcnn_internimage_small_test.py'
    model_cfg.write_text(f"_base_ = [{str(small_model['model_cfg'])!r}]\n"
                         "model = dict(roi_head=dict(mask_roi_extractor=None, mask_head=None))\n")
    checkpoint = kit.write_random_checkpoint(model_cfg, tmp_path / 'random.pth')
    work_dir = tmp_path / 'work_dir'
    result = kit.run_deploy(str(DEPLOY_CONFIGS / 'detection' / 'detection_onnxruntime_static.py'), str(model_cfg),
                            str(checkpoint), str(DEMO_IMAGE), '--work-dir', str(work_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    model = onnx.load(str(work_dir / 'end2end.onnx'))
    assert [value.name for value in model.graph.output] == ['dets', 'labels']
    (image_input,) = model.graph.input
    shape = [d.dim_value for d in image_input.type.tensor_type.shape.dim]
    assert shape == [1, 3, 256, 224]   # the 600x512 demo image at the 256 px test scale, padded to 32
    session = ort.InferenceSession(str(work_dir / 'end2end.onnx'), providers=['CPUExecutionProvider'])
    dets, labels = session.run(None, {'input': np.zeros(shape, np.float32)})
    assert dets.shape[:2] == labels.shape and dets.shape[2] == 5
    assert (work_dir / 'output_onnxruntime.jpg').is_file()
