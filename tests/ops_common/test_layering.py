"""ops_dcnv3 and ops_dcnv4 stand side by side on ops_common: no Python import and no C++ include crosses between
them, and ops_common depends on neither (docs/architecture.md)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_IMPORT = re.compile(r'^\s*(?:from|import)\s+(ops_\w+)', re.M)
CXX_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
FORBIDDEN = {'ops_dcnv3': {'ops_dcnv4'}, 'ops_dcnv4': {'ops_dcnv3'}, 'ops_common': {'ops_dcnv3', 'ops_dcnv4'},
             'ops_roialign': {'ops_dcnv3', 'ops_dcnv4'}}


def package_files(package: str, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob('*') if p.suffix in suffixes and 'build' not in p.parts)


@pytest.mark.parametrize('package', sorted(FORBIDDEN))
def test_python_imports_stay_within_the_floor(package):
    files = package_files(package, ('.py',))
    assert files, f'no Python files found under {package}'
    crossing = [(f.relative_to(REPO), name) for f in files for name in PYTHON_IMPORT.findall(f.read_text())
                if name in FORBIDDEN[package]]
    assert not crossing, f'{package} imports a sibling operator package: {crossing}'


@pytest.mark.parametrize('package', sorted(FORBIDDEN))
def test_cxx_includes_stay_within_the_floor(package):
    files = package_files(package, ('.h', '.cpp', '.cu', '.cuh'))
    assert files, f'no C++ sources found under {package}'
    siblings = tuple(sibling[len('ops_'):] for sibling in FORBIDDEN[package])  # headers are named dcnv3*, dcnv4*
    crossing = [(f.relative_to(REPO), name) for f in files for name in CXX_INCLUDE.findall(f.read_text())
                if Path(name).name.startswith(siblings)]
    assert not crossing, f'{package} includes a sibling operator package\'s header: {crossing}'


@pytest.mark.parametrize('setup', ['ops_dcnv3', 'ops_dcnv4', 'ops_roialign'])
def test_each_setup_builds_with_ops_common_only(setup):
    text = (REPO / setup / 'setup.py').read_text()
    assert 'from ops_common.build import setup_op_package' in text
    assert not any(sibling in text for sibling in FORBIDDEN[setup] | {'ops_dcnv3/setup.py'})


def test_the_installed_project_ships_every_op_package():
    """The editable install maps only the packages pyproject.toml includes: one missing there (ops_common once)
    cannot be imported outside the repository root, and neither can the op packages that stand on it."""
    text = (REPO / 'pyproject.toml').read_text()
    for package in sorted(FORBIDDEN):
        assert f'"{package}*"' in text, f'pyproject.toml does not include {package}'
