"""DCNv4 operator: compiled CPU/CUDA kernels (``ops_dcnv4._C``) and a pure-PyTorch reference.

Importing this package never requires the compiled extension; without it the operator runs the reference core and
warns once. See docs/dcnv4_operator.md.
"""
from .functions import DCNv4Function, dcnv4_core_pytorch, extension_available, pack_offset_mask
from .modules import DCNv3OnDCNv4, DCNv4

__all__ = ['DCNv3OnDCNv4', 'DCNv4', 'DCNv4Function', 'dcnv4_core_pytorch', 'extension_available', 'pack_offset_mask']
