# Runtime defaults as the original ships them: an older mmdet 2.x runtime file, so there is no `auto_scale_lr`,
# `opencv_num_threads` or `mp_start_method` here (`--auto-scale-lr` then only warns, as upstream).
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
