"""EMA checkpoints (mmdet's ``ExpMomentumEMAHook`` saves ``ema_*`` buffers with the model) load into a model without
them: ``drop_ema_buffers`` inside ``load_checkpoint_checked``, everything else still checked strictly."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import mmdet_custom  # noqa: F401  (registrations, patches)
from mmcv_custom.cli.checks import drop_ema_buffers, load_checkpoint_checked
from mmcv_custom.cli.errors import UserError


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def ema_checkpoint(model: nn.Module) -> dict:
    """What an EMA run saves: the model's tensors (the EMA weights) plus an ``ema_<key with _>`` copy of every one
    (the raw weights), as ``BaseEMAHook.before_run`` names them."""
    state = {key: value + 1.0 if value.is_floating_point() else value.clone()
             for key, value in model.state_dict().items()}
    ema = {f"ema_{key.replace('.', '_')}": value * 3.0 if value.is_floating_point() else value.clone()
           for key, value in model.state_dict().items()}
    return dict(meta=dict(iter=2), state_dict={**state, **ema})


def test_the_ema_buffers_of_the_model_are_dropped_and_counted_in_one_log_line(caplog):
    model = small_model()
    state_dict = ema_checkpoint(model)['state_dict']
    with caplog.at_level(logging.INFO, logger='mmdet'):
        kept = drop_ema_buffers(state_dict, model, 'ema.pth')
    # conv 2 + BN 5 (weight, bias, running mean/var, num_batches_tracked) + conv 2 = 9 tensors kept, 9 ema_* dropped
    assert set(kept) == set(model.state_dict()) and len(kept) == 9
    assert len(state_dict) == 18
    assert [r.getMessage() for r in caplog.records if 'ema_*' in r.getMessage()] == [
        "ema.pth: dropped its 9 ema_* buffers (an EMA training run's; the model's own tensors in it hold the EMA "
        "weights)"]


def test_a_plain_checkpoint_is_returned_unchanged():
    model = small_model()
    state_dict = model.state_dict()
    assert drop_ema_buffers(state_dict, model, 'plain.pth') is state_dict


def test_a_model_that_has_the_buffers_keeps_them():
    model = small_model()
    model.register_buffer('ema_0_weight', torch.zeros_like(model[0].weight))   # mid-training: the hook registered it
    state_dict = {**model.state_dict(), 'ema_0_weight': torch.ones_like(model[0].weight)}
    assert 'ema_0_weight' in drop_ema_buffers(state_dict, model, 'run.pth')


def test_an_ema_checkpoint_loads_its_main_tensors_strictly(tmp_path):
    model = small_model()
    checkpoint = ema_checkpoint(model)
    torch.save(checkpoint, tmp_path / 'ema.pth')
    load_checkpoint_checked(model, str(tmp_path / 'ema.pth'), 'the model of cfg.py')
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, checkpoint['state_dict'][key])   # the EMA weights, not the ema_* copies
    assert not any(name.startswith('ema_') for name, _ in model.named_buffers())


@pytest.mark.parametrize('extra_key', ['ema_head_weight', 'ema_0_weight_typo', 'extra.weight'])
def test_other_extra_keys_are_still_refused(tmp_path, extra_key):
    # only ema_<a key of this model> is an EMA buffer of it: an ema_ key of another model stays unexpected
    model = small_model()
    checkpoint = ema_checkpoint(model)
    checkpoint['state_dict'][extra_key] = torch.zeros(2)
    torch.save(checkpoint, tmp_path / 'other.pth')
    with pytest.raises(UserError, match=rf'1 unexpected \(e\.g\. {extra_key}\)'):
        load_checkpoint_checked(small_model(), str(tmp_path / 'other.pth'), 'the model of cfg.py')
