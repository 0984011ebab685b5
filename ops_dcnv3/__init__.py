"""DCNv3 operator: compiled CPU/CUDA kernels (``ops_dcnv3._C``) and a pure-PyTorch reference.

Importing this package never requires the compiled extension.
"""
from .functions import DCNv3Function, dcnv3_core_pytorch, extension_available
from .modules import DCNv3, DCNv3_pytorch

__all__ = ['DCNv3', 'DCNv3Function', 'DCNv3_pytorch', 'dcnv3_core_pytorch', 'extension_available']
