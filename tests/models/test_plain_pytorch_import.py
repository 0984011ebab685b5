"""The backbones, the DCNv3 modules and the CUDA test modules import with torch (and timm) alone.

Each check runs in a fresh interpreter whose import system refuses mmcv, mmdet and mmcv_custom (a meta-path finder
raising ImportError, as on a machine where they are not installed), so that tools/gpu_check.sh keeps working on a
bare GPU machine and the backbones stay usable outside mmdet.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BLOCKER = textwrap.dedent('''
    import sys

    class RefuseMMStack:
        """Meta-path finder: mmcv, mmdet and mmcv_custom are not installed here."""
        BLOCKED = ('mmcv', 'mmdet', 'mmcv_custom')

        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in self.BLOCKED:
                raise ImportError(f'{name} is blocked by the plain-PyTorch import test')
            return None

    sys.meta_path.insert(0, RefuseMMStack())
''')


def run_blocked(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get('PYTHONPATH', '')]))
    return subprocess.run([sys.executable, '-c', BLOCKER + textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_backbones_build_and_run_without_mmcv_and_mmdet():
    result = run_blocked('''
        import warnings
        import torch
        from mmdet_custom.models.backbones.intern_image import InternImage
        from mmdet_custom.models.backbones.cbnet import CBInternImage
        from ops_dcnv3.modules import DCNv3, DCNv3_pytorch
        import mmdet_custom
        assert not mmdet_custom.MMDET_STACK_INSTALLED
        assert not any(name.split('.')[0] in ('mmcv', 'mmdet', 'mmcv_custom') for name in sys.modules)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            model = InternImage.from_variant('T', core_op='DCNv3_pytorch', depths=[1, 1, 1, 1]).eval()
            model.init_weights()  # without init_cfg: the construction-time init, logged through `logging`
            cb = CBInternImage(channels=16, depths=[1, 1, 1, 1], groups=[1, 2, 4, 8], core_op='DCNv3_pytorch',
                               out_indices=[(0, 1, 2, 3), (1, 2, 3)])
        with torch.no_grad():
            shapes = [tuple(o.shape) for o in model(torch.randn(1, 3, 64, 64))]
            cb_shapes = [tuple(o.shape) for o in cb(torch.randn(1, 3, 64, 64))[1]]
        print(shapes, cb_shapes)
    ''')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ('[(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4), (1, 512, 2, 2)] '
                                     '[(1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2)]')


def test_roialign_package_and_its_mmcv_route_import_without_mmcv():
    """The route to mmcv (ops_roialign.mmcv_route) lives in the op package: it imports mmcv only when installed."""
    result = run_blocked('''
        import ops_roialign
        from ops_roialign.mmcv_route import patch_mmcv_roi_align_cpu
        assert not any(name.split('.')[0] in ('mmcv', 'mmdet', 'mmcv_custom') for name in sys.modules)
        try:
            patch_mmcv_roi_align_cpu()
        except ImportError as error:
            print('refused:', error)
    ''')
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('refused: mmcv')

def test_flash_intern_image_builds_and_runs_without_mmcv_and_mmdet():
    result = run_blocked('''
        import warnings
        import torch
        from mmdet_custom.models.backbones.flash_intern_image import FlashInternImage
        from ops_dcnv4.modules import DCNv4
        assert not any(name.split('.')[0] in ('mmcv', 'mmdet', 'mmcv_custom') for name in sys.modules)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            model = FlashInternImage.from_variant('T', depths=[1, 1, 1, 1]).eval()
            model.init_weights()
        with torch.no_grad():
            print([tuple(o.shape) for o in model(torch.randn(1, 3, 64, 96))])
    ''')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[(1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6), (1, 512, 2, 3)]'


@pytest.mark.parametrize('test_module', ['tests/ops_dcnv3/test_dcnv3_cuda.py', 'tests/models/test_intern_image_cuda.py',
                                         'tests/ops_dcnv3/test_dcnv3_cuda_bodies.py'])
def test_cuda_test_modules_import_without_mmcv_and_mmdet(test_module):
    result = run_blocked(f'''
        import importlib.util
        spec = importlib.util.spec_from_file_location('module_under_test', {str(REPO / test_module)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        tests = [name for name in vars(module) if name.startswith('test_')]
        assert tests, 'no tests collected'
        print(len(tests))
    ''')
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 3


def test_installed_stack_still_registers_the_backbones():
    # The other side: with mmcv/mmdet installed, importing the plugin registers the backbones into mmdet.
    import mmdet_custom
    if not mmdet_custom.MMDET_STACK_INSTALLED:
        pytest.skip('mmcv/mmdet are not installed here: nothing is registered')
    from mmdet.models.builder import BACKBONES

    from mmdet_custom.models.backbones import CBInternImage, FlashInternImage, InternImage
    assert BACKBONES.get('InternImage') is InternImage and BACKBONES.get('CBInternImage') is CBInternImage
    assert BACKBONES.get('FlashInternImage') is FlashInternImage
