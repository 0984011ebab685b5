"""image_demo.py draws detections into a picture; get_flops.py adds the DCNv3 core cost to mmcv's count."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from mmcv import Config
from mmcv.cnn import get_model_complexity_info
from mmdet.models import build_detector

import get_flops


def test_image_demo_writes_a_picture_with_detections(helpers, trained_run, shapes_data, tmp_path):
    image = shapes_data / 'val' / 'val_00001.jpg'
    out_file = tmp_path / 'picture.jpg'
    # image_demo.py takes no --cfg-options: the trained run's model (depths [1, 1, 1, 1]) is a config file
    config = tmp_path / 'trained_model.py'
    config.write_text(f'_base_ = [{str(helpers.repo / helpers.demo_config)!r}]\n'
                      'model = dict(backbone=dict(depths=[1, 1, 1, 1]))\n')
    result = helpers.run_script(['image_demo.py', str(image), str(config), str(trained_run / 'latest.pth'),
                                 '--out-file', str(out_file), '--score-thr', '0.0', '--device', 'cpu'])
    picture = cv2.imread(str(out_file))
    original = cv2.imread(str(image))
    assert picture.shape == original.shape
    assert np.abs(picture.astype(int) - original.astype(int)).mean() > 1  # something was drawn
    assert 'detections with score >= 0.0 drawn to' in result.stdout

    # the original's form: --out is a folder, the picture keeps the image name
    helpers.run_script(['image_demo.py', str(image), str(config), str(trained_run / 'latest.pth'),
                        '--out', str(tmp_path / 'demo'), '--device', 'cuda:0'])  # falls back to the CPU
    assert (tmp_path / 'demo' / 'val_00001.jpg').exists()


def test_dcnv3_flops_formula():
    # docs/model_zoo.md (FLOPs): sum over stages of depth * 5 * (H / (4 * 2^i)) * (W / (4 * 2^i)) * 9 * C_i
    expected = (2 * 5 * 200 * 320 * 9 * 64 + 2 * 5 * 100 * 160 * 9 * 128
                + 3 * 5 * 50 * 80 * 9 * 256 + 1 * 5 * 25 * 40 * 9 * 512)
    assert get_flops.dcnv3_flops([2, 2, 3, 1], 64, 800, 1280) == expected


def test_padded_shape():
    assert get_flops.padded_shape([800, 1333], 32) == (800, 1344)
    assert get_flops.padded_shape([100], 32) == (128, 128)
    assert get_flops.padded_shape([100, 90], -1) == (100, 90)


def test_count_adds_dcnv3_to_the_generic_count(helpers):
    cfg = Config.fromfile(str(helpers.repo / helpers.demo_config))
    cfg.model.backbone.depths = [1, 1, 1, 1]
    result = get_flops.count(cfg, 64, 96)

    model = build_detector(cfg.model, test_cfg=cfg.get('test_cfg'))
    model.eval()
    model.forward = get_flops.dummy_forward(model)
    generic, params = get_model_complexity_info(model, (3, 64, 96), print_per_layer_stat=False, as_strings=False)
    assert result['params'] == params == sum(p.numel() for p in model.parameters())
    assert result['dcnv3_flops'] == get_flops.dcnv3_flops([1, 1, 1, 1], 32, 64, 96) > 0 and result['core'] == 'DCNv3'
    assert result['flops'] == pytest.approx(generic + result['dcnv3_flops'], rel=1e-6)


def test_cli_prints_gflops_and_params(helpers, capsys):
    get_flops.main([str(helpers.repo / helpers.demo_config), '--shape', '100', '--cfg-options',
                    'model.backbone.depths=[1,1,1,1]'])
    printed = capsys.readouterr().out
    assert 'Input shape: (3, 128, 128)' in printed
    assert 'GFLOPs (DCNv3 core:' in printed and 'Params:' in printed


@pytest.mark.slow
def test_internimage_t_mask_rcnn_matches_the_readme_table(helpers):
    """The original's README: Mask R-CNN InternImage-T, 49M parameters, 270 GFLOPs (get_flops.py default 800x1280)."""
    cfg = Config.fromfile(str(helpers.repo / 'configs/coco/mask_rcnn_internimage_t_fpn_1x_coco.py'))
    cfg.model.backbone.init_cfg = None
    result = get_flops.count(cfg, *get_flops.padded_shape([800, 1280], 32))
    assert round(result['params'] / 1e6) == 49
    assert round(result['flops'] / 1e9) == 270


def test_count_labels_the_flash_internimage_sampling_term_dcnv4(helpers):
    cfg = Config.fromfile(str(helpers.repo / 'configs/demo/mask_rcnn_flash_internimage_demo_shapes.py'))
    result = get_flops.count(cfg, 64, 96)
    backbone = build_detector(cfg.model).backbone
    assert type(backbone).__name__ == 'FlashInternImage' and result['core'] == 'DCNv4'
    assert result['dcnv3_flops'] == get_flops.dcnv3_flops(list(backbone.depths), int(backbone.channels), 64, 96) > 0
