"""Compare the COCO metrics of two test.py runs (their ``eval_*.json`` files, written with ``--work-dir``): every
``*_mAP``, ``*_mAP_50`` and ``*_mAP_75`` must agree within a tolerance (absolute; the metrics are in [0, 1]).

usage: python tools/compare_eval.py EVAL_A EVAL_B [--tolerance 0.02] [--labels GPU CPU]
  EVAL_A / EVAL_B  an eval_*.json file, or a work dir (its newest eval_*.json)
Exit status 0 when they agree, 1 when a metric differs by more than the tolerance or the files share no metric.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

COMPARED_SUFFIXES = ('_mAP', '_mAP_50', '_mAP_75')


def read_metrics(path: str) -> dict[str, float]:
    """The ``metric`` dict of a test.py eval json file (or of the newest one in a folder)."""
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, 'eval_*.json')), key=os.path.getmtime)
        if not found:
            raise SystemExit(f'compare_eval: no eval_*.json in {path} (run test.py with --work-dir and --eval)')
        path = found[-1]
    with open(path) as f:
        return json.load(f)['metric']


def compare(a: dict[str, float], b: dict[str, float], tolerance: float) -> tuple[bool, float, list[str]]:
    """(agree, largest absolute difference, compared keys) over the mAP metrics both runs report."""
    keys = sorted(k for k in a if k in b and k.endswith(COMPARED_SUFFIXES))
    worst = max((abs(float(a[k]) - float(b[k])) for k in keys), default=float('inf'))
    return bool(keys) and worst <= tolerance, worst, keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('eval_a')
    parser.add_argument('eval_b')
    parser.add_argument('--tolerance', type=float, default=0.02)
    parser.add_argument('--labels', nargs=2, default=('A', 'B'))
    args = parser.parse_args(argv)
    a, b = read_metrics(args.eval_a), read_metrics(args.eval_b)
    agree, worst, keys = compare(a, b, args.tolerance)
    shown = ' '.join(f'{k} {a[k]:.3f}/{b[k]:.3f}' for k in keys if k.endswith('_mAP'))
    print(f'eval-compare: {shown} ({"/".join(args.labels)}) | largest difference over {len(keys)} metrics '
          f'{worst:.4f}, tolerance {args.tolerance}: {"agree" if agree else "DIFFER"}')
    return 0 if agree else 1


if __name__ == '__main__':
    sys.exit(main())
