"""tools/pretrain_demo_backbone.py: targets match the rendered shapes, and the saved backbone loads via init_cfg."""
from __future__ import annotations

import numpy as np
import torch

from mmdet_custom.models.backbones import InternImage
from tools.make_synthetic_coco import CLASSES
from tools.pretrain_demo_backbone import DEMO_BACKBONE, main, render_batch


def test_targets_mark_the_shapes_at_stride_4():
    images, targets = render_batch(np.random.default_rng(0), 4, 64, max_objects=3, min_radius=0.12, max_radius=0.3)
    assert images.shape == (4, 3, 64, 64) and targets.shape == (4, 16, 16)
    assert set(torch.unique(targets).tolist()) <= set(range(len(CLASSES) + 1))
    assert all((t > 0).any() for t in targets)  # every image has at least one object
    assert abs(images.mean().item()) < 1.5  # normalised like the detector's input


def test_saved_backbone_loads_into_the_demo_backbone(tmp_path, capsys):
    out = tmp_path / 'backbone.pth'
    main(['--iters', '2', '--batch-size', '2', '--size', '64', '--log-interval', '1', '--out', str(out)])
    assert 'saved the backbone' in capsys.readouterr().out
    backbone = InternImage(**DEMO_BACKBONE, init_cfg=dict(type='Pretrained', checkpoint=str(out)))
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.init_weights()
    saved = torch.load(out, weights_only=False)['state_dict']
    assert set(saved) == set(before)
    assert any(not torch.equal(before[k], backbone.state_dict()[k]) for k in saved)
