"""mmdet 2.28's own tools (shipped in the mmdet package, ``mmdet/.mim/tools``) on this project's configs: every config
registers the plugin through mmcv's ``custom_imports``, so ``get_flops.py`` builds InternImage models,
``browse_dataset.py`` runs the plugin's pipeline steps and ``confusion_matrix.py`` reads test.py's results. Each
tool runs as users run it: its own script, from a folder outside the repository, without importing the plugin."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mmdet
import pytest
from mmcv import Config

REPO = Path(__file__).resolve().parents[2]
MMDET_TOOLS = Path(mmdet.__file__).parent / '.mim' / 'tools'
CONFIGS = sorted(p for p in (REPO / 'configs').rglob('*.py') if '_base_' not in p.parts)
TINY_MODEL = ['model.backbone.depths=[1,1,1,1]']


@pytest.mark.parametrize('config', CONFIGS, ids=lambda p: str(p.relative_to(REPO / 'configs')))
def test_every_config_imports_the_plugin(config):
    assert Config.fromfile(str(config)).custom_imports == dict(imports=['mmdet_custom'], allow_failed_imports=False)


def run_tool(tool: str, args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """``python <mmdet>/.mim/tools/<tool> ARGS`` in ``cwd`` (not the repository: the plugin must come from the
    config's custom_imports, not from the tool's folder)."""
    command = [sys.executable, str(MMDET_TOOLS / tool), *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300,
                            env={**os.environ, 'OMP_NUM_THREADS': '1',
                                 'PYTHONWARNINGS': 'ignore::DeprecationWarning'})
    if check and result.returncode != 0:
        raise AssertionError(f'{" ".join(command)} failed ({result.returncode}):\n{result.stdout[-2000:]}\n'
                             f'{result.stderr[-4000:]}')
    return result


def test_mmdet_tools_are_installed():
    assert (MMDET_TOOLS / 'analysis_tools' / 'get_flops.py').is_file(), f'no mmdet tools in {MMDET_TOOLS}'


@pytest.mark.slow
def test_get_flops_builds_an_internimage_detector(helpers, tmp_path):
    config = str(REPO / helpers.demo_config)
    result = run_tool('analysis_tools/get_flops.py', [config, '--shape', '64', '64', '--cfg-options',
                                                               *TINY_MODEL], tmp_path)
    assert 'Flops:' in result.stdout and 'Params:' in result.stdout
    # the same config without custom_imports: the error users of the original met
    unplugged = tmp_path / 'unplugged.py'
    unplugged.write_text(f"_base_ = ['{config}']\ncustom_imports = None\n")
    result = run_tool('analysis_tools/get_flops.py', [str(unplugged), '--shape', '64', '64'], tmp_path,
                      check=False)
    assert result.returncode != 0 and 'InternImage is not in the models registry' in result.stderr


@pytest.mark.slow
def test_browse_dataset_runs_the_plugins_pipeline_step(helpers, shapes_data, tmp_path):
    out = tmp_path / 'browse'
    options = [option for option in helpers.tiny_cfg_options(shapes_data) if option.startswith('data.train.')]
    run_tool('misc/browse_dataset.py', [str(REPO / helpers.demo_config), '--output-dir', str(out),
                                                 '--not-show', '--cfg-options', *options,
                                                 'data.train.pipeline.0.type=GuardedLoadImageFromFile'], tmp_path)
    n_train = len(json.loads((shapes_data / 'annotations' / 'instances_train.json').read_text())['images'])
    assert len(list(out.glob('*.jpg'))) + len(list(out.glob('*.png'))) == n_train


@pytest.mark.slow
def test_confusion_matrix_reads_test_py_results(helpers, shapes_data, trained_run, tmp_path):
    results = tmp_path / 'results.pkl'
    options = helpers.tiny_cfg_options(shapes_data)
    helpers.run_script(['test.py', helpers.demo_config, str(trained_run / 'latest.pth'), '--out', str(results),
                        '--cfg-options', *options])
    test_options = [option for option in options if option.startswith(('data.test.', 'model.'))]
    run_tool('analysis_tools/confusion_matrix.py', [str(REPO / helpers.demo_config), str(results),
                                                             str(tmp_path), '--cfg-options', *test_options], tmp_path)
    assert (tmp_path / 'confusion_matrix.png').is_file()
