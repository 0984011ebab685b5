# Template: Mask R-CNN + InternImage-T fine-tuned from its COCO checkpoint on your own COCO-format dataset (boxes and
# polygon masks, e.g. converted from LabelMe or YOLO segmentation). Boxes only (VOC, YOLO boxes): use
# faster_rcnn_internimage_t_fpn_1x_custom.py. Steps (README, "Your own dataset"):
#   1. python tools/dataset_converters/to_coco.py labelme --json-dir data/my_dataset/labelme \
#          --img-dir data/my_dataset/images --out data/my_dataset/annotations/instances.json --val-ratio 0.1
#   2. copy this file; set data_root, img_prefix and `classes` (to_coco.py prints the tuple to paste)
#   3. python train.py configs/custom/my_config.py   (checks the annotation file's categories against `classes` and
#      the heads' num_classes before training)
#   4. python test.py configs/custom/my_config.py work_dirs/my_config/latest.pth --eval bbox segm
# The heads' num_classes follow len(classes); the COCO checkpoint's class layers (81 / 80 outputs) do not fit and
# are skipped when loading it (load_from may be partial on purpose, as in mmcv).
_base_ = ['../coco/mask_rcnn_internimage_t_fpn_1x_coco.py']
data_root = 'data/my_dataset/'
classes = ('class_a', 'class_b')  # the order of the categories' ids in the annotation file
img_prefix = data_root + 'images/'
model = dict(
    backbone=dict(init_cfg=None),  # the whole detector starts from load_from
    roi_head=dict(bbox_head=dict(num_classes=len(classes)), mask_head=dict(num_classes=len(classes))))
data = dict(
    samples_per_gpu=2,
    workers_per_gpu=2,
    train=dict(classes=classes, ann_file=data_root + 'annotations/instances_train.json', img_prefix=img_prefix),
    val=dict(classes=classes, ann_file=data_root + 'annotations/instances_val.json', img_prefix=img_prefix),
    test=dict(classes=classes, ann_file=data_root + 'annotations/instances_val.json', img_prefix=img_prefix))
load_from = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/mask_rcnn_internimage_t_fpn_1x_coco.pth'
# 12 epochs at lr 1e-4 for 8 GPUs x 2 images; with fewer images per step scale lr linearly (README, Clusters)
runner = dict(type='EpochBasedRunner', max_epochs=12)
