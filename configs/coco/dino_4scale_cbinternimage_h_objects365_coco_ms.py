# DINO + CB-InternImage-H on COCO, tested with test-time augmentation (three scales x horizontal flip, merged by
# DINOHead.aug_test: class-wise NMS over the union of the views' detections). Same model and checkpoint as the _ss
# config (dino_4scale_cbinternimage_h_objects365_coco.pth); the original reports 65.0 box AP with TTA but ships
# neither the scales nor the merge rule, so these are this project's choice around the 2000x1000 test scale.
#   python test.py configs/coco/dino_4scale_cbinternimage_h_objects365_coco_ms.py CHECKPOINT --eval bbox
# (`test.py CONFIG_ss.py CHECKPOINT --tta` reads the same `tta` settings from any config that has them.)
_base_ = ['./dino_4scale_cbinternimage_h_objects365_coco_ss.py', '../_base_/tta/dino_ms_flip_2000x1000.py']
model = dict(test_cfg=dict(tta_merge=dict(rule='nms', iou_threshold=0.6)))
# validation during training stays single-scale (the _ss pipeline); the test split is augmented
data = dict(test=dict(pipeline={{_base_.tta_test_pipeline}}), test_dataloader=dict(samples_per_gpu=1))
