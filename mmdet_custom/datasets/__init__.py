from .checks import check_dataset_files
from .crowd_human import CrowdHumanDataset

__all__ = ['CrowdHumanDataset', 'check_dataset_files']
