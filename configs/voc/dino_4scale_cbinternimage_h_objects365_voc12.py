# DINO (4 scales) + CB-InternImage-H on PASCAL VOC 07+12, as the VOC2007 config but tested on VOC2012 test.
# 1 image per GPU. Released: dino_4scale_cbinternimage_h_objects365_voc0712.pth (VOC 2012 test: 97.2 mAP).
_base_ = ['./dino_4scale_cbinternimage_h_objects365_voc07.py']
data = dict(
    # VOC2012 test has no public labels: run test.py with --format-only and submit the result files.
    test=dict(
        type='VOCDataset',
        ann_file='./data/VOCdevkit/VOC2012test/ImageSets/Main/test.txt',
        img_prefix='./data/VOCdevkit/VOC2012test/'))
