"""mmcv_custom (the patches floor, the command line included) imports nothing of the plugin above it, and the error
type every floor raises imports the standard library only (docs/architecture.md)."""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PLUGIN_IMPORT = re.compile(r'^\s*(?:from|import)\s+mmdet_custom\b', re.M)


def test_mmcv_custom_does_not_import_the_plugin():
    files = sorted((REPO / 'mmcv_custom').rglob('*.py'))
    assert files
    crossing = [str(f.relative_to(REPO)) for f in files if PLUGIN_IMPORT.search(f.read_text())]
    assert not crossing, f'mmcv_custom imports mmdet_custom: {crossing}'


def test_the_error_module_imports_the_standard_library_only():
    tree = ast.parse((REPO / 'mmcv_custom/cli/errors.py').read_text())
    modules = {alias.name.split('.')[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names}
    modules |= {node.module.split('.')[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert modules <= set(sys.stdlib_module_names) | {'__future__'}, modules
