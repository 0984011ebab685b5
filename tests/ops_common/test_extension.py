"""ops_common.extension: the one loader of the operators' compiled modules and the one routing policy."""
from __future__ import annotations

import warnings

import pytest
import torch

from ops_common.extension import ExtensionLoader


def test_missing_extension_is_none_with_the_error_kept():
    loader = ExtensionLoader('ops_common_no_such_package', 'Nothing')
    assert loader.load() is None and not loader.available()
    assert isinstance(loader.error, ImportError)
    message = loader.missing_message('the reference')
    assert 'ops_common_no_such_package' in message and 'make setup' in message and 'the reference' in message


def test_loads_a_built_extension_once():
    loader = ExtensionLoader('ops_dcnv3', 'DCNv3')
    if not loader.available():
        pytest.skip(f'ops_dcnv3._C is not built ({loader.error})')
    assert loader.load() is loader.load() and hasattr(loader.load(), 'dcnv3_forward')


def test_route_runs_the_kernel_where_it_can():
    loader = ExtensionLoader('ops_common_fake', 'Fake')
    loader.module = type('FakeExtension', (), {'with_cuda': False})()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert loader.route(torch.zeros(1), lambda: 'kernel', lambda: 'reference') == 'kernel'


def test_route_falls_back_with_one_warning():
    loader = ExtensionLoader('ops_common_no_such_package', 'Nothing')
    with pytest.warns(UserWarning, match='Nothing runs the .slower. pure-PyTorch core') as caught:
        assert loader.route(torch.zeros(1), lambda: 'kernel', lambda: 'reference') == 'reference'
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # said once only
        assert loader.route(torch.zeros(1), lambda: 'kernel', lambda: 'reference') == 'reference'


def test_route_falls_back_for_cuda_tensors_of_a_cpu_build():
    loader = ExtensionLoader('ops_common_fake', 'Fake')
    loader.module = type('FakeExtension', (), {'with_cuda': False})()
    cuda_like = type('CudaLike', (torch.Tensor,), {'is_cuda': property(lambda self: True)})
    x = torch.zeros(1).as_subclass(cuda_like)
    with pytest.warns(UserWarning, match='built without CUDA'):
        assert loader.route(x, lambda: 'kernel', lambda: 'reference') == 'reference'
