"""mmdet 2.28's own tools (shipped in the mmdet package, ``mmdet/.mim/tools``) on this project's configs: every config
registers the plugin through mmcv's ``custom_imports``, so ``get_flops.py`` builds InternImage models,
``analyze_results.py`` runs the plugin's pipeline steps and ``confusion_matrix.py`` reads test.py's results. Each
tool runs as users run it: its own script, from a folder outside the repository, without importing the plugin."""
from __future__ import annotations

import os
import re
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
DINO_DEMO = REPO / 'configs/demo/dino_internimage_demo_shapes.py'


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
def test_get_flops_builds_an_internimage_detector(tmp_path):
    # the demo DINO: InternImage and DINO both come from the plugin. (On an R-CNN config mmdet's forward_dummy feeds
    # random boxes, some of negative size, to RoIAlign, which mmcv's CPU kernel refuses: a CPU limit of the tool.)
    config = str(DINO_DEMO)
    result = run_tool('analysis_tools/get_flops.py', [config, '--shape', '128', '128', '--cfg-options',
                                                      *TINY_MODEL], tmp_path)
    assert 'Flops:' in result.stdout and 'Params:' in result.stdout
    # the same config without custom_imports: the error users of the original met
    unplugged = tmp_path / 'unplugged.py'
    unplugged.write_text(f"_base_ = ['{config}']\ncustom_imports = None\n")
    result = run_tool('analysis_tools/get_flops.py', [str(unplugged), '--shape', '128', '128'], tmp_path,
                      check=False)
    assert result.returncode != 0 and re.search(r"'(DINO|InternImage) is not in the models registry'", result.stderr)


@pytest.fixture(scope='module')
def test_results(helpers, shapes_data, trained_run, tmp_path_factory) -> Path:
    """test.py's raw results (--out) of the tiny trained demo model on the val images."""
    results = tmp_path_factory.mktemp('results') / 'results.pkl'
    helpers.run_script(['test.py', helpers.demo_config, str(trained_run / 'latest.pth'), '--out', str(results),
                        '--cfg-options', *helpers.tiny_cfg_options(shapes_data)])
    return results


def test_options(helpers, shapes_data) -> list[str]:
    return [option for option in helpers.tiny_cfg_options(shapes_data) if option.startswith(('data.test.', 'model.'))]


@pytest.mark.slow
def test_analyze_results_runs_the_plugins_pipeline_step(helpers, shapes_data, test_results, tmp_path):
    # the test pipeline starts with the plugin's GuardedLoadImageFromFile: unknown to mmdet without custom_imports
    run_tool('analysis_tools/analyze_results.py', [str(REPO / helpers.demo_config), str(test_results), str(tmp_path),
                                                   '--topk', '2', '--cfg-options', *test_options(helpers, shapes_data),
                                                   'data.test.pipeline.0.type=GuardedLoadImageFromFile'], tmp_path)
    assert len(list((tmp_path / 'good').glob('*.jpg'))) == 2 and len(list((tmp_path / 'bad').glob('*.jpg'))) == 2


@pytest.mark.slow
def test_confusion_matrix_reads_test_py_results(helpers, shapes_data, test_results, tmp_path):
    run_tool('analysis_tools/confusion_matrix.py', [str(REPO / helpers.demo_config), str(test_results), str(tmp_path),
                                                    '--cfg-options', *test_options(helpers, shapes_data)], tmp_path)
    assert (tmp_path / 'confusion_matrix.png').is_file()
