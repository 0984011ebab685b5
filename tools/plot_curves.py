"""Draw the training curves of a work dir (or one json log): loss_lr.png and, when it validated, val_map.png.

    python tools/plot_curves.py WORK_DIR_OR_JSON_LOG [--out-dir DIR]

Training runs write them themselves (TrainingCurvesHook); this redraws them, e.g. for an older run.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import os.path as osp
import sys

if importlib.util.find_spec('mmcv_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from mmcv_custom.cli.errors import UserError, add_debug_argument, run_cli
from mmcv_custom.training_curves import write_training_curves


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description='Draw the loss / lr and validation-mAP curves of a training run')
    parser.add_argument('path', help='work dir (its newest *.log.json is used) or a json log')
    parser.add_argument('--out-dir', help='where the pictures go (default: next to the log)')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    json_log = args.path
    if osp.isdir(args.path):
        logs = sorted(glob.glob(osp.join(args.path, '*.log.json')))
        if not logs:
            raise UserError(f'{args.path}: no *.log.json training log in this folder')
        json_log = logs[-1]
    elif not osp.isfile(args.path):
        raise UserError(f'{args.path}: no such work dir or json log')
    written = write_training_curves(json_log, args.out_dir)
    if not written:
        raise UserError(f'{json_log}: no training entries to draw')
    for path in written:
        print(f'wrote {path}')
    return written


if __name__ == '__main__':
    run_cli(main, 'plot_curves.py')
