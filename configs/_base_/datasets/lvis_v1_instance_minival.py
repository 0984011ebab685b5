# LVIS v1 as in lvis_v1_instance.py, but validated/tested on the 5k-image minival split.
_base_ = 'lvis_v1_instance.py'
data_root = 'data/lvis_v1/'
data = dict(
    val=dict(ann_file=data_root + 'annotations/lvis_v1_minival.json'),
    test=dict(ann_file=data_root + 'annotations/lvis_v1_minival.json'))
