# DINO (4 scales) + CB-InternImage-H on LVIS v1 (1203 classes), fine-tuned from the Objects365 detector, evaluated
# on LVIS v1 val instead of minival; everything else as in the minival config (upstream's _base_ here is
# lvis_v1_instance.py, which differs from lvis_v1_instance_minival.py only in the val/test annotation file).
# 1 image per GPU. Released: dino_4scale_cbinternimage_h_objects365_lvis.pth, 62.3 / 63.2 box AP (val, ss / ms).
_base_ = ['./dino_4scale_cbinternimage_h_objects365_lvis_minival_ss.py']
data_root = 'data/lvis_v1/'
data = dict(
    val=dict(ann_file=data_root + 'annotations/lvis_v1_val.json'),
    test=dict(ann_file=data_root + 'annotations/lvis_v1_val.json'))
