"""One real training step and one simple_test of the Mask R-CNN FlashInternImage-T and DINO FlashInternImage-T configs
on the CPU on synthetic data (the configs' own detectors, pipelines, FPN_vitdet / ChannelMapper and optimizers; small
images, no pretrained download), through the InternImage configs' test helpers."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmcv import Config
from mmdet.models import build_detector

import mmdet_custom  # noqa: F401
from tests.configs.test_train_step import IMAGE_HW, _config, _train_step_and_test
from tests.helpers import make_coco_dataset
from tests.models.test_dino import dino_train_step_and_test

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on the shared 2-core machine OpenMP threads spin against other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def coco_data(tmp_path_factory):
    return make_coco_dataset(str(tmp_path_factory.mktemp('coco_flash')), num_images=2, image_size=IMAGE_HW,
                             num_classes=80, seed=0)


def test_mask_rcnn_flash_t_train_step_and_test(coco_data):
    cfg = _config('mask_rcnn_flash_intern_image_t_fpn_1x_coco.py', coco_data)
    assert cfg.model.backbone.type == 'FlashInternImage' and cfg.model.backbone.with_cp is True
    assert cfg.model.neck.type == 'FPN_vitdet'
    _train_step_and_test(cfg, num_train_images=2)


@pytest.mark.slow  # 900 queries on 224-px images through 6+6 transformer layers: ~30-60 s on 2 shared cores
def test_dino_flash_t_train_step_and_test(tmp_path):
    cfg = Config.fromfile(str(REPO / 'configs/coco/dino_4scale_flash_internimage_t_1x_coco.py'))
    cfg.model.backbone.init_cfg = None  # random weights, no download
    # Stochastic depth drops a block's whole residual branch per image: with 2 images it sometimes drops both at the
    # last block, whose MLP then rightly gets no gradient. The gradient check below needs every block in the graph.
    cfg.model.backbone.drop_path_rate = 0.0
    torch.manual_seed(0)  # the same weights whichever tests ran before
    model = build_detector(cfg.model)
    assert type(model.backbone).__name__ == 'FlashInternImage'
    # offset_mask starts at zero (so DCNv4 outputs zero and value_proj gets no gradient yet), but the mask part's
    # gradient is the sampled value: non-zero from the first step
    dino_train_step_and_test(model, tmp_path, ('backbone.levels.0.blocks.0.dcn.offset_mask.weight',
                                               'backbone.levels.3.blocks.3.mlp.fc1.weight'), max_per_img=300)
