"""REQUIRE_EXT=1 (set by CI, .ci/run) turns the skips for a compiled op extension that is not built into failures;
without it they stay skips, and other skips are untouched."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ['pytester']

CASES = '''
import pytest

def test_missing():
    pytest.skip('ops_fake._C is not built (make setup)')

def test_unrelated():
    pytest.skip('no CUDA device')
'''


@pytest.mark.parametrize('require, failed, skipped', [('1', 1, 1), ('', 0, 2)])
def test_extension_skips_fail_only_when_required(pytester, monkeypatch, require, failed, skipped):
    pytester.makeconftest((Path(__file__).parent / 'conftest.py').read_text())
    pytester.makepyfile(test_cases=CASES)
    monkeypatch.setenv('REQUIRE_EXT', require)
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider')
    result.assert_outcomes(failed=failed, skipped=skipped)
    if failed:
        result.stdout.fnmatch_lines(['*REQUIRE_EXT=1 but ops_fake._C is not built*'])
