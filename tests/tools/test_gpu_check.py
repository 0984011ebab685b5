"""tools/gpu_check.sh --full's guards and tools/compare_eval.py (the GPU-vs-CPU test.py comparison), without a GPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools'))

import compare_eval  # noqa: E402


def write_eval(folder: Path, metric: dict, name: str = 'eval_20261205_000000.json') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(dict(config='x.py', metric=metric)))
    return path


BASE = {'bbox_mAP': 0.700, 'bbox_mAP_50': 0.950, 'bbox_mAP_75': 0.800, 'bbox_mAP_s': 0.5,
        'segm_mAP': 0.720, 'segm_mAP_50': 0.940, 'segm_mAP_75': 0.820, 'bbox_mAP_copypaste': '0.7 ...'}


def test_metrics_within_tolerance_agree(tmp_path):
    a = write_eval(tmp_path / 'gpu', BASE)
    b = write_eval(tmp_path / 'cpu', {**BASE, 'bbox_mAP': 0.715, 'segm_mAP_75': 0.805})
    assert compare_eval.main([str(a), str(b), '--tolerance', '0.02']) == 0
    agree, worst, keys = compare_eval.compare(compare_eval.read_metrics(str(a)), compare_eval.read_metrics(str(b)),
                                              0.02)
    assert agree and worst == pytest.approx(0.015) and len(keys) == 6  # mAP_s and copypaste are not compared


def test_one_metric_past_tolerance_differs(tmp_path, capsys):
    a = write_eval(tmp_path / 'gpu', BASE)
    b = write_eval(tmp_path / 'cpu', {**BASE, 'segm_mAP_50': 0.91})
    assert compare_eval.main([str(a), str(b), '--tolerance', '0.02', '--labels', 'GPU', 'CPU']) == 1
    out = capsys.readouterr().out
    assert 'DIFFER' in out and '0.0300' in out and '(GPU/CPU)' in out


def test_no_shared_metric_is_not_agreement(tmp_path):
    a = write_eval(tmp_path / 'gpu', {'bbox_mAP': 0.5})
    b = write_eval(tmp_path / 'cpu', {'segm_mAP': 0.5})
    assert compare_eval.main([str(a), str(b)]) == 1


def test_a_work_dir_reads_its_newest_eval_file(tmp_path):
    old = write_eval(tmp_path / 'gpu', {**BASE, 'bbox_mAP': 0.1}, 'eval_1.json')
    new = write_eval(tmp_path / 'gpu', BASE, 'eval_2.json')
    os.utime(old, (1, 1))
    assert new.exists() and compare_eval.read_metrics(str(tmp_path / 'gpu'))['bbox_mAP'] == 0.7
    with pytest.raises(SystemExit, match='no eval_'):
        compare_eval.read_metrics(str(tmp_path))


def test_full_check_without_a_kit_stops_before_building(tmp_path):
    results = tmp_path / 'results'
    env = {**os.environ, 'GPU_CHECK_NO_GPU': '1', 'KIT_DIR': str(tmp_path / 'no-kit'), 'PYTHON': sys.executable}
    done = subprocess.run(['bash', str(ROOT / 'tools/gpu_check.sh'), '--full', str(results)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (results / 'summary.txt').read_text()
    assert 'kit: FAILED: no mmcv_full wheel in' in summary and 'no-kit' in summary
    assert 'build_gpu_kit.sh' in summary
    # the run stopped before the op builds (minutes on a GPU machine's budget)
    assert not (results / 'build_ops_dcnv3.log').exists()
