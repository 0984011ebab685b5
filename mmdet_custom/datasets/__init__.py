from .checks import check_dataset_files
from .crowd_human import CrowdHumanDataset
from .pipelines import GuardedLoadImageFromFile, guard_image_loading

__all__ = ['CrowdHumanDataset', 'GuardedLoadImageFromFile', 'check_dataset_files', 'guard_image_loading']
