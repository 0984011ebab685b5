"""EfficientFFN: registry, upstream parameter names, equality with an unsplit two-layer FFN, dropout_layer."""
from __future__ import annotations

import pytest
import torch
from mmcv.cnn.bricks.transformer import build_feedforward_network

import mmdet_custom  # noqa: F401  (registers EfficientFFN)
from mmdet_custom.models.utils.efficient_ffn import EfficientFFN


def _build(**kwargs) -> EfficientFFN:
    return build_feedforward_network(dict(type='EfficientFFN', **kwargs))


def test_registered_with_upstream_state_dict_keys():
    ffn = _build(embed_dims=8, feedforward_channels=16, split=4)
    assert isinstance(ffn, EfficientFFN)
    shapes = {k: tuple(v.shape) for k, v in ffn.state_dict().items()}
    expected = {'fc2_bias': (8,)}
    for i in range(4):
        expected[f'fc1_{i}.weight'] = (4, 8)
        expected[f'fc1_{i}.bias'] = (4,)
        expected[f'fc2_{i}.weight'] = (8, 4)
    assert shapes == expected
    assert torch.equal(ffn.fc2_bias, torch.zeros(8))


@torch.no_grad()
def test_equals_unsplit_ffn():
    torch.manual_seed(0)
    ffn = _build(embed_dims=6, feedforward_channels=12, split=3).double()
    for p in ffn.parameters():
        p.uniform_(-1, 1)
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    # the same FFN written out: W1 = rows of fc1_0..2 stacked, W2 = columns of fc2_0..2 side by side
    w1 = torch.cat([getattr(ffn, f'fc1_{i}').weight for i in range(3)])
    b1 = torch.cat([getattr(ffn, f'fc1_{i}').bias for i in range(3)])
    w2 = torch.cat([getattr(ffn, f'fc2_{i}').weight for i in range(3)], dim=1)
    expected = x + torch.relu(x @ w1.T + b1) @ w2.T + ffn.fc2_bias
    torch.testing.assert_close(ffn(x), expected)
    identity = torch.randn_like(x)
    torch.testing.assert_close(ffn(x, identity=identity), expected - x + identity)
    no_identity = _build(embed_dims=6, feedforward_channels=12, split=3, add_identity=False).double()
    no_identity.load_state_dict(ffn.state_dict())
    torch.testing.assert_close(no_identity(x), expected - x)


def test_checkpointed_chunks_give_the_same_gradients():
    torch.manual_seed(0)
    plain = _build(embed_dims=8, feedforward_channels=32, split=4)
    checkpointed = _build(embed_dims=8, feedforward_channels=32, split=4, use_checkpoint=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(3, 8, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    plain(x).square().sum().backward()
    checkpointed(x2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(plain.fc1_2.weight.grad, checkpointed.fc1_2.weight.grad)


def test_dropout_layer_is_built():
    """Upstream referenced an un-imported build_dropout: any dropout_layer crashed. Here it works."""
    ffn = _build(embed_dims=4, feedforward_channels=8, split=2,
                 dropout_layer=dict(type='Dropout', drop_prob=1.0))
    ffn.train()
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(ffn(x), x)  # the whole branch is dropped, only the identity remains
    ffn.eval()
    assert not torch.allclose(ffn(x), x)


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_fcs=1), 'num_fcs'),
    (dict(feedforward_channels=10, split=4), 'split'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _build(embed_dims=4, **kwargs)
