# DINO + CB-InternImage-H on LVIS v1 val, tested with test-time augmentation (three scales x horizontal flip,
# merged by DINOHead.aug_test: class-wise NMS over the union of the views' detections). Same model and checkpoint as
# the _ss config (dino_4scale_cbinternimage_h_objects365_lvis.pth); the original reports 63.2 box AP (val,
# multi-scale) but ships neither the scales nor the merge rule, so these are this project's choice.
#   python test.py configs/lvis/dino_4scale_cbinternimage_h_objects365_lvis_val_ms.py CHECKPOINT --eval bbox
_base_ = ['./dino_4scale_cbinternimage_h_objects365_lvis_val_ss.py', '../_base_/tta/dino_ms_flip_2000x1000.py']
model = dict(test_cfg=dict(tta_merge=dict(rule='nms', iou_threshold=0.6)))
data = dict(test=dict(pipeline={{_base_.tta_test_pipeline}}), test_dataloader=dict(samples_per_gpu=1))
