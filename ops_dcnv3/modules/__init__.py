from .dcnv3 import DCNv3, DCNv3_pytorch, build_act_layer, build_norm_layer

__all__ = ['DCNv3', 'DCNv3_pytorch', 'build_act_layer', 'build_norm_layer']
