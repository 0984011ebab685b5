# Cascade Mask R-CNN + InternImage-L, 3x schedule (36 epochs) with the DETR-style AutoAugment multi-scale pipeline,
# lr 2e-4 with layer decay 0.9, and an EMA of the weights; "4 nodes, total batch 64" (32 GPUs x 2 images).
_base_ = [
    './cascade_internimage_l_fpn_1x_coco.py',
    '../_base_/datasets/coco_instance_autoaugment.py',
]
data = dict(train=dict(pipeline={{_base_.train_pipeline_autoaugment}}))
# offset_lr_scale only matches parameters named sampling_offsets/reference_points, which this model does not have
# (the backbone's DCNv3 offsets are named `offset`): kept for fidelity, no effect.
optimizer = dict(lr=0.0002, paramwise_cfg=dict(layer_decay_rate=0.9, offset_lr_scale=0.01))
lr_config = dict(step=[27, 33])  # schedule_3x
runner = dict(max_epochs=36)
# Replaces the default NumClassCheckHook (as the original does). priority 49: the EMA weights are swapped in before
# the checkpoint hook saves.
custom_hooks = [dict(type='ExpMomentumEMAHook', resume_from=None, momentum=0.0001, priority=49)]
auto_scale_lr = dict(base_batch_size=64)  # "4 nodes, total batch 64"
