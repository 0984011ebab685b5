"""The stack check: the common broken installs become one error line naming the fix.

:func:`check_stack` runs when ``mmcv_custom`` is imported (before anything else of the project): a wrong mmcv or
mmdet version, mmcv 2.x / mmdet 3.x, or mmcv-full without its compiled ops stops there with one line naming the
fix, instead of a traceback from deep inside mmcv. Tested in ``tests/mmcv_custom/test_stack_check.py``.

Pins that make patches unnecessary live in ``requirements/constraints.txt``: yapf 0.40.1 (0.40.2 dropped
``FormatCode(verify=...)`` used by ``mmcv.Config``), setuptools < 82 (mmcv's setup.py needs ``pkg_resources``), and
numpy per Python version (1.26.4 on 3.11, the tested default; numpy 2 on 3.12+, with opencv/ml-dtypes to match).
What a pin cannot fix is patched: ``torch_compat`` (mmcv/mmdet on today's torch), ``numpy_compat`` (mmcv/mmdet on
numpy 1.24+ and 2), ``mmdet_custom.apis.distributed`` (distributed runs without CUDA) and
``mmdet_custom.deploy.mmdeploy_compat`` (mmdeploy 0.14 on today's torch).
"""
from __future__ import annotations

import importlib
import importlib.util

from .cli.errors import UserError

MMCV_REQUIRED = '1.7'      # mmcv-full 1.7.x: the last 1.x line, accepted by mmdet 2.28 (>=1.3.17,<1.8)
MMDET_REQUIRED = '2.28'    # mmdet 2.28.x: the last 2.x line (upstream pins 2.28.1)
FIX = 'run `make setup` in the repository root (it builds mmcv-full 1.7.2 with ops against the installed torch)'


class StackError(ImportError, UserError):
    """The installed mmcv/mmdet stack cannot run this project; the message names the fix."""


def installed_version(module_name: str) -> str | None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, '__version__', '0')


def check_stack() -> None:
    """Raise :class:`StackError` with one line naming the fix when the installed stack is wrong."""
    mmcv_version = installed_version('mmcv')
    if mmcv_version is None:
        raise StackError(f'mmcv-full {MMCV_REQUIRED}.x is not installed: {FIX}')
    if mmcv_version.split('.')[0] != '1':
        raise StackError(
            f'mmcv {mmcv_version} is installed, but this project needs mmcv-full {MMCV_REQUIRED}.x (mmcv 2.x is the '
            f'OpenMMLab 2.0 line, incompatible with mmdet 2.x): `pip uninstall -y mmcv mmcv-full`, then {FIX}')
    if not mmcv_version.startswith(MMCV_REQUIRED + '.'):
        raise StackError(f'mmcv-full {mmcv_version} is installed, but this project needs mmcv-full '
                         f'{MMCV_REQUIRED}.x: {FIX}')
    if importlib.util.find_spec('mmcv._ext') is None:
        raise StackError(
            f'mmcv {mmcv_version} is installed without its compiled ops (mmcv._ext is missing: this is the "lite" '
            f'`mmcv` package or a build with MMCV_WITH_OPS=0): `pip uninstall -y mmcv mmcv-full`, then {FIX}')
    try:
        importlib.import_module('mmcv._ext')
    except ImportError as error:
        raise StackError(
            f'mmcv-full {mmcv_version} has compiled ops that fail to load ({error}); they were most likely built '
            f'against another torch: {FIX}') from None

    mmdet_version = installed_version('mmdet')
    if mmdet_version is None:
        raise StackError(f'mmdet {MMDET_REQUIRED}.x is not installed: {FIX}')
    if mmdet_version.split('.')[0] != '2':
        raise StackError(
            f'mmdet {mmdet_version} is installed, but this project is an mmdet {MMDET_REQUIRED}.x plugin (mmdet 3.x '
            f'is the OpenMMLab 2.0 line): `pip uninstall -y mmdet`, then {FIX}')
    if not mmdet_version.startswith(MMDET_REQUIRED + '.'):
        raise StackError(f'mmdet {mmdet_version} is installed, but this project needs mmdet {MMDET_REQUIRED}.x: {FIX}')
