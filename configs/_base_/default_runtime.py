# Runtime defaults as the original ships them (an older mmdet 2.x runtime file: no `opencv_num_threads` or
# `mp_start_method`), plus two additions:
# - custom_imports: every config registers this plugin when mmcv reads it, so mmdet's own tools (get_flops.py,
#   browse_dataset.py, confusion_matrix.py, ...) find InternImage, DINO & co. (README, "mmdet's own tools");
# - auto_scale_lr: the global batch the config's lr was set for (the original's "8 GPUs x 2 images" unless a config
#   says otherwise; None where the original does not say how many GPUs trained it). `train.py --auto-scale-lr` scales
#   the lr by the actual global batch over it, gradient accumulation included (mmdet_custom/apis/batch_size.py).
custom_imports = dict(imports=['mmdet_custom'], allow_failed_imports=False)
auto_scale_lr = dict(enable=False, base_batch_size=16)
checkpoint_config = dict(interval=1)
log_config = dict(
    interval=50,
    hooks=[
        dict(type='TextLoggerHook'),
        # dict(type='TensorboardLoggerHook'),
    ])
custom_hooks = [dict(type='NumClassCheckHook')]

dist_params = dict(backend='nccl')
log_level = 'INFO'
load_from = None
resume_from = None
workflow = [('train', 1)]
