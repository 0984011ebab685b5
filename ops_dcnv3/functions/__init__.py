from .dcnv3_func import (
    DCNv3Function,
    check_dcnv3_args,
    dcnv3_core_pytorch,
    extension_available,
    load_extension,
    softmax_over_points,
)

__all__ = ['DCNv3Function', 'check_dcnv3_args', 'dcnv3_core_pytorch', 'extension_available',
           'load_extension', 'softmax_over_points']
