"""Training curves from a tiny synthetic json log: what is read, the iteration axis of epoch-based logs, and the
PNG files (real images of the expected size, written by matplotlib's Agg canvas)."""
from __future__ import annotations

import json

import matplotlib.image
import pytest

from mmcv_custom.training_curves import (
    LOSS_LR_PNG,
    VAL_MAP_PNG,
    global_iterations,
    map_keys,
    read_json_log,
    val_steps,
    write_training_curves,
)


def _write_log(path, entries, broken_tail=False):
    lines = [json.dumps(dict(env_info='...', seed=0))] + [json.dumps(e) for e in entries]
    text = '\n'.join(lines) + '\n'
    if broken_tail:
        text += '{"mode": "train", "iter": 9'   # a run killed mid-write
    path.write_text(text)
    return path


def _iter_log(tmp_path, with_val=True):
    entries = []
    for it in (10, 20, 30, 40):
        entries.append(dict(mode='train', epoch=1, iter=it, lr=1e-3 * it / 40, loss=2.0 - it / 40,
                            loss_cls=1.0 - it / 80, loss_bbox=1.0 - it / 80, time=0.3))
        if with_val and it in (20, 40):   # mmcv logs the number of evaluated images as a val entry's 'iter'
            entries.append(dict(mode='val', epoch=1, iter=6, lr=1e-3, bbox_mAP=it / 100, bbox_mAP_50=it / 50,
                                segm_mAP=it / 120))
    return _write_log(tmp_path / '20260101_000000.log.json', entries, broken_tail=True)


def test_read_json_log_splits_modes_and_skips_broken_lines(tmp_path):
    train, val = read_json_log(str(_iter_log(tmp_path)))
    assert [e['iter'] for e in train] == [10, 20, 30, 40]
    assert [e['bbox_mAP'] for e in val] == [0.2, 0.4]
    assert map_keys(val) == ['bbox_mAP', 'segm_mAP']   # not AP50
    assert val_steps(train, val) == [20, 40]   # evaluated after the 2nd and the 4th logged iteration
    assert map_keys([dict(mode='val', mAP=0.5, AP50=0.7)]) == ['mAP']   # VOC


def test_epoch_based_logs_count_iterations_over_the_run():
    entries = [dict(epoch=1, iter=50), dict(epoch=1, iter=100), dict(epoch=2, iter=50), dict(epoch=2, iter=100),
               dict(epoch=3, iter=50)]
    assert global_iterations(entries) == [50, 100, 150, 200, 250]


def test_pictures_are_written_next_to_the_log(tmp_path):
    written = write_training_curves(str(_iter_log(tmp_path)))
    assert written == [str(tmp_path / LOSS_LR_PNG), str(tmp_path / VAL_MAP_PNG)]
    loss_lr = matplotlib.image.imread(str(tmp_path / LOSS_LR_PNG))
    assert loss_lr.shape[:2] == (640, 800)   # 8 x 6.4 in at 100 dpi: two panels
    val_map = matplotlib.image.imread(str(tmp_path / VAL_MAP_PNG))
    assert val_map.shape[:2] == (320, 800)
    assert loss_lr.std() > 0.01   # something drawn, not a blank canvas


def test_no_val_curve_without_evaluation(tmp_path):
    written = write_training_curves(str(_iter_log(tmp_path, with_val=False)))
    assert written == [str(tmp_path / LOSS_LR_PNG)]
    assert not (tmp_path / VAL_MAP_PNG).exists()


def test_empty_log_writes_nothing(tmp_path):
    assert write_training_curves(str(_write_log(tmp_path / 'x.log.json', []))) == []


def test_plot_functions_refuse_empty_input(tmp_path):
    from mmcv_custom.training_curves import plot_loss_lr, plot_val_map
    with pytest.raises(ValueError, match='no training entries'):
        plot_loss_lr([], str(tmp_path / 'a.png'))
    with pytest.raises(ValueError, match='no mAP'):
        plot_val_map([dict(mode='val', iter=1, AP50=0.3)], str(tmp_path / 'b.png'), steps=[1])
