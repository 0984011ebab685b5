"""The ground floor of the deformable-convolution operator family (ops_dcnv3, ops_dcnv4, ops_roialign).

What the operators share lives here once, so that ``ops_dcnv3`` and ``ops_dcnv4`` stand side by side and neither
imports nor includes the other (docs/architecture.md):

- ``extension``: the one loader of a package's compiled ``_C`` and the one routing / fallback policy (kernel,
  or the PyTorch reference where the kernel cannot run, said once);
- ``reference``: the PyTorch reference core (bilinear sampling on ``F.grid_sample``) and the argument checks
  both cores share;
- ``modules``: the DCNv3-structured module (projections, depth-wise conv, centre feature scale) whose core a
  subclass supplies, its norm/activation builders and ``CenterFeatureScaleModule``;
- ``build.py``: the build helper every op's ``setup.py`` loads by path (CUDA discovery, flags);
- ``src/``: the C++ sampling math, ISA dispatch, CPU vector loops (one template over the offset/mask layouts)
  and the CPU threading.

Importing this package needs torch only.
"""
from .extension import ExtensionLoader

__all__ = ['ExtensionLoader']
