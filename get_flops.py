"""Parameters and FLOPs of a detector, with the DCNv3 sampling cost the generic counter cannot see.

    python get_flops.py CONFIG [--shape H W | --shape S] [--size-divisor 32] [--cfg-options k=v ...]

The input is padded up to ``--size-divisor`` (-1: no padding), the detector runs ``forward_dummy`` under mmcv's
``get_model_complexity_info`` (which counts a multiply-add as one FLOP, like the original's README table), and the
DCN cores' cost, which the generic counter cannot see, is added as the original does (the backbone's
``core_flops``, formula in ops_common/flops.py); FlashInternImage's is labelled DCNv4 (the FlashInternImage
repository has no get_flops.py of its own).
"""
from __future__ import annotations

import argparse
import importlib.util
import os.path as osp
import sys

if importlib.util.find_spec('mmdet_custom') is None:  # not installed (`make setup` does): this script's repository
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import mmdet_custom  # noqa: F401  (stack check, compatibility patches, registrations)
from mmcv_custom.cli.checks import KeyValueAction, load_config
from mmcv_custom.cli.errors import add_debug_argument, run_cli
from mmdet_custom.apis.flops import count, dummy_forward, padded_shape  # noqa: F401  (dummy_forward: tests)
from ops_common.flops import dcn_core_flops as dcnv3_flops  # noqa: F401  (the formula, for callers of get_flops)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Count the parameters and FLOPs of a detector')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--shape', type=int, nargs='+', default=[800, 1280], help='input image size (H W, or S)')
    parser.add_argument('--cfg-options', nargs='+', action=KeyValueAction,
                        help='override some settings in the used config, the key-value pair in xxx=yyy format')
    parser.add_argument('--size-divisor', type=int, default=32,
                        help='Pad the input image, the minimum size that is divisible by size_divisor, -1 means do '
                             'not pad the image.')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if len(args.shape) not in (1, 2):
        parser.error(f'--shape takes 1 or 2 integers, got {len(args.shape)}')
    if min(args.shape) <= 0:
        parser.error(f'--shape {" ".join(map(str, args.shape))}: sizes must be positive')
    if args.size_divisor == 0 or args.size_divisor < -1:
        parser.error(f'--size-divisor {args.size_divisor}: expected a positive integer, or -1 (no padding)')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    height, width = padded_shape(args.shape, args.size_divisor)
    cfg = load_config(args.config, args.cfg_options, required=('model',))
    result = count(cfg, height, width)
    line = '=' * 30
    requested = tuple(args.shape) if len(args.shape) == 2 else (args.shape[0], args.shape[0])
    if requested != (height, width):
        print(f'{line}\nUse size divisor set input shape from {(3, *requested)} to {(3, height, width)}\n')
    print(f'{line}\nInput shape: {(3, height, width)}\n'
          f'Flops: {result["flops"] / 1e9:.2f} GFLOPs '
          f'({result["core"]} core: {result["dcnv3_flops"] / 1e9:.2f} GFLOPs)\n'
          f'Params: {result["params"] / 1e6:.2f} M\n{line}')
    print('!!!Please be cautious if you use the results in papers. You may need to check if all ops are supported '
          'and verify that the flops computation is correct.')
    return result


if __name__ == '__main__':
    run_cli(main, 'get_flops.py')
