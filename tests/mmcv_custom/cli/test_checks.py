"""The entry points' checks (mmcv_custom/cli/checks.py) on their own: registered type names (no false alarm on any
shipped config), evaluation metrics per dataset, and checkpoints."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmcv import Config
from torch import nn

import mmdet_custom  # noqa: F401  (registrations)
from mmcv_custom.cli.checks import (
    check_checkpoint_matches,
    check_eval_args,
    check_registered_types,
    load_checkpoint_checked,
    read_checkpoint,
    state_dict_of,
)
from mmcv_custom.cli.errors import UserError

REPO = Path(__file__).resolve().parents[3]
CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)


@pytest.mark.parametrize('config', CONFIGS)
def test_every_shipped_config_uses_registered_types_only(config):
    check_registered_types(Config.fromfile(str(REPO / config)))


def test_unknown_type_names_the_field_and_nearest_names():
    cfg = Config(dict(model=dict(type='MaskRCNN', roi_head=dict(bbox_head=[dict(type='Shared2FCBBoxHaed')]))))
    with pytest.raises(UserError, match=r"^config field model\.roi_head\.bbox_head\.0\.type: 'Shared2FCBBoxHaed' is "
                                        r'not a registered type \(nearest registered names: Shared2FCBBoxHead'):
        check_registered_types(cfg)
    cfg = Config(dict(optimizer=dict(type='zzzqqq')))
    with pytest.raises(UserError, match=r"'zzzqqq' is not a registered type \(no similar registered name\)"):
        check_registered_types(cfg)


@pytest.mark.parametrize('dataset, metrics, expected', [
    ('CocoDataset', ['bbox', 'segm'], None),
    ('CocoDataset', ['mAP'], "--eval mAP: not a metric of CocoDataset (data.test.type); choose from bbox, segm, "
                             "proposal, proposal_fast"),
    ('LVISV1Dataset', ['bbox', 'segmm'], "--eval segmm: not a metric of LVISV1Dataset (data.test.type); did you "
                                         "mean 'segm'? choose from bbox, segm, proposal, proposal_fast"),
    ('VOCDataset', ['mAP'], None),
    ('VOCDataset', ['bbox'], '--eval bbox: not a metric of VOCDataset (data.test.type); choose from mAP, recall'),
    ('VOCDataset', ['mAP', 'recall'], '--eval mAP recall: VOCDataset evaluates one metric per run; choose one of '
                                      'mAP, recall'),
    ('OpenImagesDataset', ['recall'], '--eval recall: not a metric of OpenImagesDataset (data.test.type); choose '
                                      'from mAP'),
    ('CrowdHumanDataset', ['bbox', 'MR', 'JI'], None),
    ('CrowdHumanDataset', ['mr'], "--eval mr: not a metric of CrowdHumanDataset (data.test.type); did you mean "
                                  "'MR'? choose from bbox, proposal, proposal_fast, AP, MR, JI"),
])
def test_eval_metrics_per_dataset(dataset, metrics, expected):
    data_cfg = dict(type=dataset)
    if expected is None:
        check_eval_args(data_cfg, 'data.test', metrics, format_only=False)
    else:
        with pytest.raises(UserError) as info:
            check_eval_args(data_cfg, 'data.test', metrics, format_only=False)
        assert str(info.value) == expected


def test_format_only_needs_a_result_format():
    check_eval_args(dict(type='CocoDataset'), 'data.test', None, format_only=True)
    with pytest.raises(UserError, match=r'^--format-only: VOCDataset \(data.test.type\) has no result format'):
        check_eval_args(dict(type='VOCDataset'), 'data.test', None, format_only=True)


class _Tiny(nn.Module):
    def __init__(self, width=3):
        super().__init__()
        self.body = nn.Linear(width, 2)
        self.head = nn.Linear(2, 1)


def test_checkpoint_mismatch_counts_and_first_keys(tmp_path):
    saved = _Tiny(width=4).state_dict()
    saved['extra.weight'] = torch.zeros(1)
    del saved['head.bias']
    with pytest.raises(UserError) as info:
        check_checkpoint_matches(saved, _Tiny(width=3), 'c.pth', 'the model of x.py')
    assert str(info.value) == ('checkpoint c.pth does not match the model of x.py: 1 missing (e.g. head.bias), '
                               '1 unexpected (e.g. extra.weight), 1 mis-shaped (e.g. body.weight (2, 4) vs (2, 3))')


def test_wrapped_state_dict_loads_and_partial_load_is_opt_in(tmp_path):
    source = _Tiny()
    path = tmp_path / 'wrapped.pth'
    torch.save(dict(state_dict={f'module.{k}': v for k, v in source.state_dict().items()}, meta=dict(epoch=1)), path)
    target = _Tiny()
    checkpoint = load_checkpoint_checked(target, str(path), 'the model of x.py')
    assert checkpoint['meta'] == dict(epoch=1)
    assert torch.equal(target.body.weight, source.body.weight)

    partial = tmp_path / 'partial.pth'
    torch.save({'body.weight': torch.ones(2, 3)}, partial)
    with pytest.raises(UserError, match=r'3 missing \(e.g. body.bias, head.bias, head.weight\); pass '
                                        r'--allow-partial-checkpoint to load the matching tensors only$'):
        load_checkpoint_checked(_Tiny(), str(partial), 'the model of x.py')
    target = _Tiny()
    load_checkpoint_checked(target, str(partial), 'the model of x.py', allow_partial=True)
    assert torch.equal(target.body.weight, torch.ones(2, 3))


def test_unreadable_checkpoints(tmp_path):
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(UserError, match=rf'^checkpoint {empty}: cannot be read, truncated or not a checkpoint '
                                        r'\(EOFError'):
        read_checkpoint(str(empty))
    with pytest.raises(UserError, match=rf'^--resume-from {tmp_path}/none.pth: checkpoint file does not exist$'):
        read_checkpoint(str(tmp_path / 'none.pth'), '--resume-from')
    with pytest.raises(UserError, match=r'^checkpoint x.pth: holds no state_dict of tensors$'):
        state_dict_of({'state_dict': {'a': 'not a tensor'}}, 'x.pth')
