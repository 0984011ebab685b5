"""The CUDA kernel bodies of DCNv3 and DCNv4, run on the host over every thread index of their launch by
tools/kernel_check/cuda_bodies_check.cpp: built torch-free as C++17 (the standard torch < 2.14 compiles extensions
with) under AddressSanitizer and UBSan (signed overflow included, every finding fatal), on random and degenerate
geometries (1-pixel maps, one-row/one-column maps, samples exactly on the borders, huge, NaN and infinite offsets),
compared with the float64 PyTorch reference, plus one launch past 2**31 elements (the last image of a large
stage-1 batch, on lazily committed memory)."""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from ops_dcnv3.functions import dcnv3_core_pytorch
from ops_dcnv4.functions import dcnv4_core_pytorch, offset_mask_channels

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUMPY_DTYPES = {'float': np.float32, 'double': np.float64}


@pytest.fixture(scope='module')
def checker() -> str:
    build = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'kernel_check', 'build.sh')], cwd=ROOT,
                           capture_output=True, text=True)
    assert build.returncode == 0, f'kernel check build failed:\n{build.stderr[-4000:]}'
    return os.path.join(ROOT, build.stdout.strip().splitlines()[-1])


@dataclass
class Case:
    name: str
    batch: int = 2
    height: int = 5
    width: int = 6
    kernel: int = 3
    stride: int = 1
    pad: int = 1
    dilation: int = 1
    group: int = 2
    group_channels: int = 4
    offset_scale: float = 1.0
    offset_std: float = 1.5
    special: str = ''  # 'border': samples on integer border locations; 'huge' / 'nonfinite': offsets beyond the image
    mask_softmax: bool = False
    remove_center: bool = False
    seed: int = 0
    geometry: dict = field(default_factory=dict)

    def out_size(self, size: int) -> int:
        return (size + 2 * self.pad - (self.dilation * (self.kernel - 1) + 1)) // self.stride + 1


CASES = [
    Case('plain'),
    Case('one_pixel', batch=3, height=1, width=1, group=3, group_channels=8),
    Case('one_row', height=1, width=9, group_channels=2),
    Case('one_column', height=9, width=1, group_channels=16, mask_softmax=True),
    Case('no_padding_stride2', height=8, width=7, pad=0, stride=2, group_channels=3),
    Case('kernel5_dilation2', height=7, width=9, kernel=5, pad=4, dilation=2, group=1, group_channels=8),
    Case('kernel1', kernel=1, pad=0, group=4, group_channels=4),
    Case('large_offsets_scale', offset_std=6.0, offset_scale=2.5, mask_softmax=True, group_channels=8),
    Case('border_samples', special='border', group_channels=4),
    Case('huge_offsets', special='huge', group_channels=8, mask_softmax=True),
    Case('nonfinite_offsets', special='nonfinite', group_channels=4),
    Case('wide_groups', batch=1, height=4, width=4, group=5, group_channels=16, mask_softmax=True, seed=3),
] + [Case(f'random{seed}', batch=int(b), height=int(h), width=int(w), group=int(g), group_channels=int(c),
          offset_std=float(s), mask_softmax=bool(m), seed=seed)
     for seed, (b, h, w, g, c, s, m) in enumerate(zip(
         *[np.random.default_rng(7).integers(lo, hi, 6) for lo, hi in
           ((1, 4), (1, 12), (1, 12), (1, 5), (1, 17), (0, 5), (0, 2))]), start=10)]


def make_inputs(case: Case, points: int) -> dict[str, np.ndarray]:
    """float64 inputs; offsets per the case's kind."""
    rng = np.random.default_rng(case.seed)
    h_out, w_out = case.out_size(case.height), case.out_size(case.width)
    channels = case.group * case.group_channels
    offset = rng.normal(0, case.offset_std, (case.batch, h_out, w_out, case.group * points * 2))
    if case.special == 'border':  # integer offsets: samples on pixel centres, many on the first/last row/column
        offset = np.round(offset * 2)
    elif case.special in ('huge', 'nonfinite'):
        bad = rng.random(offset.shape) < 0.4
        values = rng.choice([1e30, -1e30, 3e9, -3e9, 1e15], offset.shape) if case.special == 'huge' else \
            rng.choice([np.nan, np.inf, -np.inf], offset.shape)
        offset = np.where(bad, values, offset)
    return dict(input=rng.normal(0, 1, (case.batch, case.height, case.width, channels)), offset=offset,
                mask=rng.normal(0, 1, (case.batch, h_out, w_out, case.group * points)),
                grad_output=rng.normal(0, 1, (case.batch, h_out, w_out, channels)))


def reference_offsets(offset: np.ndarray) -> np.ndarray:
    """A non-finite offset puts the sample outside the image (every comparison with NaN is false), as a huge one
    does: the reference gets 1e6 there."""
    return np.where(np.isfinite(offset), offset, 1e6)


def geometry_text(case: Case, op: str) -> str:
    fields = dict(batch=case.batch, height_in=case.height, width_in=case.width, height_out=case.out_size(case.height),
                  width_out=case.out_size(case.width), kernel_h=case.kernel, kernel_w=case.kernel,
                  stride_h=case.stride, stride_w=case.stride, pad_h=case.pad, pad_w=case.pad,
                  dilation_h=case.dilation, dilation_w=case.dilation, group=case.group,
                  group_channels=case.group_channels, offset_scale=case.offset_scale,
                  mask_softmax=int(case.mask_softmax and op == 'dcnv3'))
    if op == 'dcnv4':
        fields.update(remove_center=int(case.remove_center),
                      offset_mask_channels=offset_mask_channels(case.group, case.kernel, case.kernel,
                                                                case.remove_center))
    return ''.join(f'{k} {v!r}\n' for k, v in fields.items())


def run_checker(checker: str, op: str, dtype: str, pack: int, directory: str, arrays: dict[str, np.ndarray],
                geometry: str, outputs: dict[str, tuple], last_image: bool = False) -> dict[str, np.ndarray]:
    with open(os.path.join(directory, 'geometry.txt'), 'w') as f:
        f.write(geometry)
    for name, array in arrays.items():
        np.ascontiguousarray(array, dtype=NUMPY_DTYPES[dtype]).tofile(os.path.join(directory, f'{name}.bin'))
    command = [checker, op, dtype, str(pack), directory] + (['--last-image'] if last_image else [])
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, 'ASAN_OPTIONS':
                            'detect_leaks=0:abort_on_error=0', 'UBSAN_OPTIONS': 'print_stacktrace=1'})
    assert result.returncode == 0, f'{" ".join(command)} failed:\n{result.stderr[-6000:]}'
    return {name: np.fromfile(os.path.join(directory, f'{name}.bin'), dtype=NUMPY_DTYPES[dtype]).reshape(shape)
            for name, shape in outputs.items()}


def dcnv3_reference(case: Case, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tensors = {k: torch.from_numpy(v).requires_grad_(k != 'grad_output') for k, v in arrays.items()}
    offset = torch.from_numpy(reference_offsets(arrays['offset'])).requires_grad_()
    output = dcnv3_core_pytorch(tensors['input'], offset, tensors['mask'], case.kernel, case.kernel, case.stride,
                                case.stride, case.pad, case.pad, case.dilation, case.dilation, case.group,
                                case.group_channels, case.offset_scale, mask_softmax=case.mask_softmax)
    output.backward(tensors['grad_output'])
    return dict(output=output.detach().numpy(), grad_input=tensors['input'].grad.numpy(),
                grad_offset=offset.grad.numpy(), grad_mask=tensors['mask'].grad.numpy())


def assert_matches(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], dtype: str, label: str,
                   kinks: bool = False) -> None:
    """``kinks``: samples lie on pixel centres, where bilinear interpolation has no derivative in the location: the
    kernels and grid_sample take different one-sided ones, so the offset gradients are not compared."""
    tolerance = dict(rtol=1e-9, atol=1e-9) if dtype == 'double' else dict(rtol=2e-4, atol=2e-4)
    for name, value in expected.items():
        if kinks and name.startswith('grad_offset'):
            continue
        np.testing.assert_allclose(actual[name], value, **tolerance, err_msg=f'{label}: {name}')


@pytest.mark.parametrize('case', CASES, ids=lambda c: c.name)
def test_dcnv3_bodies(checker, tmp_path, case):
    arrays = make_inputs(case, case.kernel ** 2)
    expected = dcnv3_reference(case, arrays)
    shapes = {k: v.shape for k, v in expected.items()}
    for dtype, packs in (('double', (1, 2)), ('float', (1, 4))):
        for pack in packs:
            if pack > 1 and case.group_channels % pack:
                continue
            actual = run_checker(checker, 'dcnv3', dtype, pack, str(tmp_path), arrays, geometry_text(case, 'dcnv3'),
                                 shapes)
            assert_matches(actual, expected, dtype, f'{case.name} {dtype} pack {pack}', case.special == 'border')


def dcnv4_arrays(case: Case) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    points = case.kernel ** 2 - int(case.remove_center)
    arrays = make_inputs(case, points)
    lead = arrays['offset'].shape[:3]
    packed = np.concatenate([arrays['offset'].reshape(*lead, case.group, points * 2),
                             arrays['mask'].reshape(*lead, case.group, points)], -1).reshape(*lead, -1)
    padded = offset_mask_channels(case.group, case.kernel, case.kernel, case.remove_center)
    packed = np.concatenate([packed, np.zeros((*lead, padded - packed.shape[-1]))], -1)
    inputs = dict(input=arrays['input'], offset_mask=packed, grad_output=arrays['grad_output'])
    tensors = {k: torch.from_numpy(v).requires_grad_(k == 'input') for k, v in inputs.items()}
    offset_mask = torch.from_numpy(np.where(np.isfinite(packed), packed, 1e6)).requires_grad_()
    output = dcnv4_core_pytorch(tensors['input'], offset_mask, case.kernel, case.kernel, case.stride, case.stride,
                                case.pad, case.pad, case.dilation, case.dilation, case.group, case.group_channels,
                                case.offset_scale, case.remove_center)
    output.backward(tensors['grad_output'])
    used = case.group * points * 3
    expected = dict(output=output.detach().numpy(), grad_input=tensors['input'].grad.numpy(),
                    grad_offset_mask=offset_mask.grad.numpy()[..., :used])
    return inputs, expected


@pytest.mark.parametrize('remove_center', [False, True], ids=['all_points', 'remove_center'])
@pytest.mark.parametrize('case', CASES, ids=lambda c: c.name)
def test_dcnv4_bodies(checker, tmp_path, case, remove_center):
    if remove_center and case.kernel % 2 == 0 or (remove_center and case.kernel == 1):
        pytest.skip('remove_center needs an odd kernel with more than one point')
    case = Case(**{**case.__dict__, 'remove_center': remove_center, 'mask_softmax': False})
    inputs, expected = dcnv4_arrays(case)
    shapes = {**{k: v.shape for k, v in expected.items()}, 'grad_offset_mask': inputs['offset_mask'].shape}
    for dtype in ('double', 'float'):
        actual = run_checker(checker, 'dcnv4', dtype, 1, str(tmp_path), inputs, geometry_text(case, 'dcnv4'), shapes)
        actual['grad_offset_mask'] = actual['grad_offset_mask'][..., :expected['grad_offset_mask'].shape[-1]]
        assert_matches(actual, expected, dtype, f'{case.name} {dtype}', case.special == 'border')


@pytest.mark.slow
def test_dcnv3_bodies_past_2_31_elements(checker, tmp_path):
    """InternImage-T's stage 1 at 800 x 1344 (200 x 336 x 64, 4 groups) with a batch of 512: 2.2e9 input elements,
    so every flat index of the last image is past 2**31; 32-bit index arithmetic overflows (UBSan) or reads the wrong
    image (the comparison). Only the last image's pages are touched."""
    case = Case('stage1_batch512', batch=512, height=200, width=336, group=4, group_channels=16, mask_softmax=True,
                offset_std=2.0, seed=5)
    assert case.batch * case.height * case.width * case.group * case.group_channels > 2 ** 31
    one = Case(**{**case.__dict__, 'batch': 1})
    arrays = make_inputs(one, 9)
    expected = dcnv3_reference(one, arrays)
    # float64: in float32 a few locations round onto pixel centres, where the offset gradient has a kink.
    actual = run_checker(checker, 'dcnv3', 'double', 2, str(tmp_path), arrays, geometry_text(case, 'dcnv3'),
                         {k: v.shape for k, v in expected.items()}, last_image=True)
    assert_matches(actual, expected, 'double', case.name)
