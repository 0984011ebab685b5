"""DCNv3 modules: ``DCNv3`` (compiled core, PyTorch fallback) and ``DCNv3_pytorch`` (PyTorch core).

Both are :class:`ops_common.modules.DCNv3Layers` with a core: parameter names and shapes are upstream's, so released
checkpoints load unchanged (docs/checkpoints.md). Sampling through the DCNv4 operator instead (InternImage's
``use_dcn_v4_op``) is ``ops_dcnv4.DCNv3OnDCNv4``, which the backbone picks once.
"""
from __future__ import annotations

import warnings

import torch

from ops_common.modules import (
    CenterFeatureScaleModule,
    DCNv3Layers,
    build_act_layer,
    build_norm_layer,
    to_channels_first,
    to_channels_last,
)

from ..functions import dcnv3_core_pytorch, dcnv3_func, softmax_over_points
from ..functions.custom_op import dcnv3 as dcnv3_custom_op

__all__ = ['CenterFeatureScaleModule', 'DCNv3', 'DCNv3_pytorch', 'build_act_layer', 'build_norm_layer',
           'to_channels_first', 'to_channels_last']


class DCNv3_pytorch(DCNv3Layers):  # noqa: N801  (upstream's name)
    """DCNv3 with the pure-PyTorch core. Same parameters as :class:`DCNv3`.

    ``use_dcn_v4_op`` is accepted for upstream's signature: this module always runs the PyTorch core (warned).
    """

    def __init__(self, *args, use_dcn_v4_op: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if use_dcn_v4_op:
            warnings.warn(f'use_dcn_v4_op=True: {type(self).__name__} always runs the pure-PyTorch DCNv3 core; '
                          'build the backbone with core_op DCNv3 and use_dcn_v4_op=True (or use '
                          'ops_dcnv4.DCNv3OnDCNv4) to sample through the DCNv4 operator', stacklevel=2)

    def _core(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return dcnv3_core_pytorch(x, offset, mask, *self._geometry())


class DCNv3(DCNv3_pytorch):
    """DCNv3 with the compiled core (CPU and CUDA kernels, the mask softmax fused into them).

    Where the kernel cannot run (not built; built without CUDA for a CUDA tensor; ONNX export) the PyTorch core
    runs instead, warned once: ops_common's routing policy (:meth:`ops_common.ExtensionLoader.route`), the one
    DCNv4 uses too. ``use_dcn_v4_op`` is accepted for upstream's signature; the DCNv4-operator route is its own
    class, ``ops_dcnv4.DCNv3OnDCNv4``, which the backbone chooses.
    """

    def __init__(self, *args, use_dcn_v4_op: bool = False, **kwargs):
        if use_dcn_v4_op:
            raise ValueError('DCNv3: use_dcn_v4_op=True is chosen where the core op is built: InternImage(core_op='
                             "'DCNv3', use_dcn_v4_op=True), or the module ops_dcnv4.DCNv3OnDCNv4")
        super().__init__(*args, **kwargs)

    def _sample(self, x: torch.Tensor, offset: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """The logits go to the core as they are: on the compiled kernel the softmax is fused into it (forward and
        backward, no softmaxed mask tensor written and read back); the fallback applies it first."""
        return self._core(x, offset, mask_logits, mask_softmax=True)

    def _core(self, x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
              mask_softmax: bool = False) -> torch.Tensor:
        """``mask`` is the weights, or with ``mask_softmax`` the logits. The fallback is DCNv3_pytorch's core (the
        one export rewriters patch, mmdet_custom/deploy)."""
        def reference() -> torch.Tensor:
            weights = softmax_over_points(mask, self.group) if mask_softmax else mask
            return super(DCNv3, self)._core(x, offset, weights)

        # torch.compile: the custom op (one graph); eager: the autograd function.
        kernel = dcnv3_custom_op if torch.compiler.is_compiling() else dcnv3_func.DCNv3Function.apply
        return dcnv3_func.EXTENSION.route(
            x, lambda: kernel(x, offset, mask, *self._geometry(), 256, mask_softmax), reference, stacklevel=5)
