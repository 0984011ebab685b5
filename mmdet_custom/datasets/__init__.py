from .crowd_human import CrowdHumanDataset
from .pipelines import GuardedLoadImageFromFile, guard_image_loading

__all__ = ['CrowdHumanDataset', 'GuardedLoadImageFromFile', 'guard_image_loading']
