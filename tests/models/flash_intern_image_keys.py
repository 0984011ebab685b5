"""The released FlashInternImage checkpoints' backbone keys and shapes, written from the published description of
the model (key names per docs/checkpoints.md, sizes per docs/model_zoo.md), independently of the model code."""
from __future__ import annotations

# name: (channels, depths, groups, post_norm, dw_kernel_size, dcn_output_bias, mlp_fc2_bias, offset_scale)
FLASH_VARIANTS = {
    't': (64, [4, 4, 18, 4], [4, 8, 16, 32], False, None, False, False, 1.0),
    's': (80, [4, 4, 21, 4], [5, 10, 20, 40], True, 3, False, False, 1.0),
    'b': (112, [4, 4, 21, 4], [7, 14, 28, 56], True, 3, False, False, 0.5),
    'l': (160, [5, 5, 22, 5], [10, 20, 40, 80], True, 3, True, True, 2.0),
}
# published backbone sizes, millions of parameters (2 decimals)
FLASH_BACKBONE_MILLIONS = {'t': 28.67, 's': 48.49, 'b': 94.90, 'l': 218.91}


def offset_mask_channels(groups: int) -> int:
    """3x3 kernel: 9 points x (2 offsets + 1 mask) per group, rounded up to a multiple of 8."""
    raw = groups * 9 * 3
    return -(-raw // 8) * 8


def expected_flash_backbone(channels: int, depths: list[int], groups: list[int], post_norm: bool,
                            dw_kernel_size: int | None, dcn_output_bias: bool, mlp_fc2_bias: bool,
                            layer_scale: bool = True) -> dict[str, tuple]:
    c = channels
    out = {
        'patch_embed.conv1.weight': (c // 2, 3, 3, 3), 'patch_embed.conv1.bias': (c // 2,),
        'patch_embed.norm1.1.weight': (c // 2,), 'patch_embed.norm1.1.bias': (c // 2,),
        'patch_embed.conv2.weight': (c, c // 2, 3, 3), 'patch_embed.conv2.bias': (c,),
        'patch_embed.norm2.1.weight': (c,), 'patch_embed.norm2.1.bias': (c,),
    }
    for i, (depth, g) in enumerate(zip(depths, groups)):
        ci, hidden, cpad = c * 2 ** i, c * 2 ** i * 4, offset_mask_channels(g)
        for j in range(depth):
            p = f'levels.{i}.blocks.{j}.'
            if layer_scale:
                out[p + 'gamma1'] = out[p + 'gamma2'] = (ci,)
            out.update({
                p + 'norm1.0.weight': (ci,), p + 'norm1.0.bias': (ci,),
                p + 'dcn.offset_mask.weight': (cpad, ci), p + 'dcn.offset_mask.bias': (cpad,),
                p + 'dcn.value_proj.weight': (ci, ci), p + 'dcn.value_proj.bias': (ci,),
                p + 'dcn.output_proj.weight': (ci, ci),
                p + 'norm2.0.weight': (ci,), p + 'norm2.0.bias': (ci,),
                p + 'mlp.fc1.weight': (hidden, ci), p + 'mlp.fc1.bias': (hidden,),
                p + 'mlp.fc2.weight': (ci, hidden),
            })
            if dw_kernel_size is not None:
                out[p + 'dcn.offset_mask_dw.weight'] = (ci, 1, dw_kernel_size, dw_kernel_size)
                out[p + 'dcn.offset_mask_dw.bias'] = (ci,)
            if dcn_output_bias:
                out[p + 'dcn.output_proj.bias'] = (ci,)
            if mlp_fc2_bias:
                out[p + 'mlp.fc2.bias'] = (ci,)
        if not post_norm:
            out[f'levels.{i}.norm.0.weight'] = out[f'levels.{i}.norm.0.bias'] = (ci,)
        if i < len(depths) - 1:
            out[f'levels.{i}.downsample.conv.weight'] = (2 * ci, ci, 3, 3)
            out[f'levels.{i}.downsample.norm.1.weight'] = out[f'levels.{i}.downsample.norm.1.bias'] = (2 * ci,)
    return out


def expected_variant(name: str) -> dict[str, tuple]:
    channels, depths, groups, post_norm, dw, out_bias, fc2_bias, _ = FLASH_VARIANTS[name]
    return expected_flash_backbone(channels, depths, groups, post_norm, dw, out_bias, fc2_bias)
