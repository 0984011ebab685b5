from .dcnv4_func import (
                         DCNv4Function,
                         check_dcnv4_args,
                         dcnv4_core_pytorch,
    extension_available,
    load_extension,
    offset_mask_channels,
    pack_offset_mask,
    unpack_offset_mask,
)

__all__ = ['DCNv4Function', 'check_dcnv4_args', 'dcnv4_core_pytorch', 'extension_available', 'load_extension',
           'offset_mask_channels', 'pack_offset_mask', 'unpack_offset_mask']
