from .efficient_ffn import EfficientFFN
from .flash_msda import FlashMultiScaleDeformableAttention
from .query_denoising import CdnQueryGenerator, DnQueryGenerator, build_dn_generator
from .transformer import DinoTransformer, DinoTransformerDecoder, coordinate_to_encoding

__all__ = ['CdnQueryGenerator', 'DinoTransformer', 'DinoTransformerDecoder', 'DnQueryGenerator', 'EfficientFFN',
           'FlashMultiScaleDeformableAttention', 'build_dn_generator', 'coordinate_to_encoding']
