"""The PyTorch reference core of the DCN operators: bilinear sampling of kernel points on ``F.grid_sample``.

Both operators sample the same way (docs/dcnv3_operator.md; DCNv4 only packs offsets and mask differently and may
skip the kernel centre), so :func:`dcn_sample_pytorch` is the one reference; ``dcnv3_core_pytorch`` and
``dcnv4_core_pytorch`` check their arguments and lay their inputs out for it. :func:`check_geometry` holds the
checks both cores share, with the operator's name in every message.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GEOMETRY_ARGUMENTS = ('kernel_h', 'kernel_w', 'stride_h', 'stride_w', 'pad_h', 'pad_w', 'dilation_h', 'dilation_w',
                      'group', 'group_channels')


def _reference_points(H_: int, W_: int, H_out: int, W_out: int, device, dtype, kernel_h, kernel_w,
                      dilation_h, dilation_w, stride_h, stride_w):
    """Centre of each output position's regular grid, normalised by the padded input size (H_, W_)."""
    half_h = (dilation_h * (kernel_h - 1)) // 2
    half_w = (dilation_w * (kernel_w - 1)) // 2
    ref_y, ref_x = torch.meshgrid(
        torch.linspace(half_h + 0.5, half_h + 0.5 + (H_out - 1) * stride_h, H_out,
                       dtype=dtype, device=device),
        torch.linspace(half_w + 0.5, half_w + 0.5 + (W_out - 1) * stride_w, W_out,
                       dtype=dtype, device=device),
        indexing='ij')
    ref_y = ref_y.reshape(-1)[None] / H_
    ref_x = ref_x.reshape(-1)[None] / W_
    return torch.stack((ref_x, ref_y), -1).reshape(1, H_out, W_out, 1, 2)


def _dilation_grid(H_: int, W_: int, kernel_h, kernel_w, dilation_h, dilation_w, group, device, dtype):
    """Regular kernel displacement of each point, normalised, ordered group-major then k = i*kernel_h + j."""
    half_h = (dilation_h * (kernel_h - 1)) // 2
    half_w = (dilation_w * (kernel_w - 1)) // 2
    points = []
    x, y = torch.meshgrid(
        torch.linspace(-half_w, -half_w + (kernel_w - 1) * dilation_w, kernel_w, dtype=dtype, device=device),
        torch.linspace(-half_h, -half_h + (kernel_h - 1) * dilation_h, kernel_h, dtype=dtype, device=device),
        indexing='ij')  # x outer (column index i), y inner (row index j): k = i*kernel_h + j
    points.extend([x / W_, y / H_])
    grid = torch.stack(points, -1).reshape(-1, 1, 2).repeat(1, group, 1).permute(1, 0, 2)
    return grid.reshape(1, 1, 1, group * kernel_h * kernel_w, 2)


def check_geometry(op: str, input: torch.Tensor, others: dict[str, torch.Tensor], kernel_h: int, kernel_w: int,
                   stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int, group: int,
                   group_channels: int, refuse_bool: bool = False) -> tuple[int, int]:
    """The checks both cores share: tensors (4-D; ``others`` in the input's dtype and on its device), integer
    geometry, ``C = group * group_channels`` and a non-empty output; returns (H_out, W_out). Each failure is one
    ValueError (TypeError for a non-tensor) naming the argument, prefixed by ``op``. ``refuse_bool``: a bool is not
    taken for an integer argument."""
    for name, tensor in (('input', input), *others.items()):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f'{op}: {name} must be a torch.Tensor, got {type(tensor).__name__}')
        if tensor.dim() != 4:
            raise ValueError(f'{op}: {name} must be a 4-D channels-last tensor, got shape {tuple(tensor.shape)}')
    if not input.is_floating_point():
        raise ValueError(f'{op}: input must be floating point, got {input.dtype}')
    for name, tensor in others.items():
        if tensor.dtype != input.dtype:
            raise ValueError(f'{op}: {name} has dtype {tensor.dtype} but input has dtype {input.dtype}')
        if tensor.device != input.device:
            raise ValueError(f'{op}: {name} is on {tensor.device} but input is on {input.device}')
    values = (kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, group, group_channels)
    for name, value in zip(GEOMETRY_ARGUMENTS, values):
        least = 0 if name.startswith('pad') else 1
        if (refuse_bool and isinstance(value, bool)) or int(value) != value or value < least:
            raise ValueError(f'{op}: {name} must be an integer >= {least}, got {value!r}')
    N, H, W, C = input.shape
    if C != group * group_channels:
        raise ValueError(
            f'{op}: input must be channels-last (N, H, W, C) with C = group * group_channels = {group} * '
            f'{group_channels} = {group * group_channels}, got shape {tuple(input.shape)}')
    H_out = (H + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) // stride_h + 1
    W_out = (W + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) // stride_w + 1
    if H_out < 1 or W_out < 1:
        raise ValueError(f'{op}: input of shape {tuple(input.shape)} is too small for the kernel geometry '
                         f'(output would be {H_out} x {W_out})')
    return H_out, W_out


def check_im2col_step(op: str, im2col_step: int, refuse_bool: bool = False) -> None:
    """im2col_step: an integer >= 1 (accepted for the originals' signatures; the kernels need no im2col buffer)."""
    if (refuse_bool and isinstance(im2col_step, bool)) or int(im2col_step) != im2col_step or im2col_step < 1:
        raise ValueError(f'{op}: im2col_step must be an integer >= 1, got {im2col_step!r}')


def _zero_pad_hw_for_export(input: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Zero padding of H and W of a channels-last tensor by concatenation, for ONNX export only.

    torch exports F.pad as a Pad whose pads come from a reversed Slice, which it cannot constant-fold: ONNX shape
    inference then loses the padded shape, and even a static-shape export keeps shape arithmetic and an unknown batch
    size. Concatenating zeros gives the same values with shapes that shape inference follows.
    """
    N, H, W, C = input.shape
    if pad_w:
        zeros = input.new_zeros((N, H, pad_w, C))
        input = torch.cat((zeros, input, zeros), 2)
    if pad_h:
        zeros = input.new_zeros((N, pad_h, W + 2 * pad_w, C))
        input = torch.cat((zeros, input, zeros), 1)
    return input


def softmax_over_points(mask_logits: torch.Tensor, group: int) -> torch.Tensor:
    """Softmax of channels-last mask logits (N, H, W, G*K) over each group's K points (DCNv3's mask), in the logits'
    dtype: CUDA autocast runs softmax in float32, and the cores take the mask in the sampled tensor's dtype."""
    N, H, W, _ = mask_logits.shape
    weights = torch.softmax(mask_logits.reshape(N, H, W, group, -1), -1).reshape(N, H, W, -1)
    return weights.to(mask_logits.dtype)


def dcn_sample_pytorch(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                       kernel_h: int, kernel_w: int, stride_h: int, stride_w: int,
                       pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
                       group: int, group_channels: int, offset_scale: float,
                       mask_softmax: bool = False) -> torch.Tensor:
    """The sampling of both cores on ``F.grid_sample`` (differentiable, any floating dtype), DCNv3's layout:
    ``offset (N, H_out, W_out, G*K*2)``, ``mask (N, H_out, W_out, G*K)``; arguments already checked.

    The spatial padding is applied to the right axes, and grids are built in the input's dtype (at least float32).
    """
    if mask_softmax:
        mask = softmax_over_points(mask, group)
    if torch.onnx.is_in_onnx_export():
        input = _zero_pad_hw_for_export(input, pad_h, pad_w)
    else:
        # F.pad pads the last dims first: (C: 0,0), (W: pad_w, pad_w), (H: pad_h, pad_h).
        input = F.pad(input, [0, 0, pad_w, pad_w, pad_h, pad_h])
    N_, H_in, W_in, _ = input.shape
    _, H_out, W_out, _ = offset.shape
    device = input.device
    # Sampling locations in at least float32 (half precision cannot hold pixel positions of large maps); the grid
    # is cast to the input's dtype only for grid_sample, which needs matching dtypes.
    dtype = torch.promote_types(input.dtype, torch.float32)

    ref = _reference_points(H_in, W_in, H_out, W_out, device, dtype, kernel_h, kernel_w,
                            dilation_h, dilation_w, stride_h, stride_w)
    grid = _dilation_grid(H_in, W_in, kernel_h, kernel_w, dilation_h, dilation_w, group, device, dtype)
    # Learned offsets are in pixels: normalise x by the padded width and y by the padded height. Dividing by the
    # sizes themselves (not a tensor built from them) keeps them dynamic in an exported ONNX graph.
    offset_xy = (offset * offset_scale).to(dtype).reshape(N_, H_out, W_out, group * kernel_h * kernel_w, 2)
    offset_normalised = torch.stack((offset_xy[..., 0] / W_in, offset_xy[..., 1] / H_in), -1).flatten(3)
    sampling_locations = (ref + grid * offset_scale).repeat(N_, 1, 1, 1, 1).flatten(3, 4) + offset_normalised

    P_ = kernel_h * kernel_w
    sampling_grids = 2 * sampling_locations - 1
    # Sampling dtype: the input's, except half precision on the CPU, whose grid_sample un-normalises coordinates in
    # half precision (errors of whole pixels on wide maps); there it samples in float32 and casts back.
    sample_dtype = input.dtype if input.is_cuda else torch.promote_types(input.dtype, torch.float32)
    # N_, H_in, W_in, G*Gc -> N_*G, Gc, H_in, W_in
    input_ = input.view(N_, H_in * W_in, group * group_channels).transpose(1, 2) \
        .reshape(N_ * group, group_channels, H_in, W_in).to(sample_dtype)
    # N_, H_out, W_out, G*P_*2 -> N_*G, H_out*W_out, P_, 2
    sampling_grid_ = sampling_grids.view(N_, H_out * W_out, group, P_, 2).transpose(1, 2).flatten(0, 1)
    # N_*G, Gc, H_out*W_out, P_
    sampling_input_ = F.grid_sample(input_, sampling_grid_.to(sample_dtype), mode='bilinear',
                                    padding_mode='zeros', align_corners=False)
    # N_, H_out, W_out, G*P_ -> N_*G, 1, H_out*W_out, P_
    mask = mask.reshape(N_, H_out * W_out, group, P_).transpose(1, 2) \
        .reshape(N_ * group, 1, H_out * W_out, P_).to(sample_dtype)
    output = (sampling_input_ * mask).sum(-1).view(N_, group * group_channels, H_out * W_out).to(input.dtype)
    return output.transpose(1, 2).reshape(N_, H_out, W_out, -1).contiguous()


