# Template for a dataset with boxes only (VOC XML, YOLO boxes -> to_coco.py): the Mask R-CNN template without its
# mask branch (mmdet's Faster R-CNN on InternImage-T), started from the same COCO Mask R-CNN checkpoint (its mask
# head is not used and is skipped when loading). Set data_root, img_prefix and `classes` as in the Mask R-CNN template.
#   python tools/dataset_converters/to_coco.py voc --ann-dir VOC/Annotations \
#       --out data/my_dataset/annotations/instances.json --val-ratio 0.1
_base_ = ['./mask_rcnn_internimage_t_fpn_1x_custom.py']
data_root = 'data/my_dataset/'
classes = ('class_a', 'class_b')
img_prefix = data_root + 'images/'
model = dict(
    type='FasterRCNN',
    roi_head=dict(mask_roi_extractor=None, mask_head=None, bbox_head=dict(num_classes=len(classes))))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', img_scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', flip_ratio=0.5),
    dict(type='Normalize', **img_norm_cfg),
    dict(type='Pad', size_divisor=32),
    dict(type='DefaultFormatBundle'),
    dict(type='Collect', keys=['img', 'gt_bboxes', 'gt_labels']),
]
data = dict(
    train=dict(classes=classes, ann_file=data_root + 'annotations/instances_train.json', img_prefix=img_prefix,
               pipeline=train_pipeline),
    val=dict(classes=classes, ann_file=data_root + 'annotations/instances_val.json', img_prefix=img_prefix),
    test=dict(classes=classes, ann_file=data_root + 'annotations/instances_val.json', img_prefix=img_prefix))
evaluation = dict(metric=['bbox'])
