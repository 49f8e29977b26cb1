# RetinaNet with PoolFormer-S12, 1x schedule on COCO: the recipe of the
# PoolFormer paper (AdamW lr 1e-4, wd 1e-4, 16 images per iteration).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mixer_backbones'], allow_failed_imports=False)
# The neck must fit the backbone (checked before anything runs); the log
# shows images per second and, without GPUs, peak process memory;
# checkpoints are atomic, resume is exact and SIGTERM/SIGUSR1 stop a run
# with a checkpoint (RunStateHook).
custom_hooks = [
    dict(type='mixer_backbones.NeckChannelsCheckHook'),
    dict(type='mixer_backbones.ThroughputHook'),
    dict(type='mixer_backbones.RunStateHook'),
]

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.PoolFormer',
        arch='s12',
        # The paper's FPN starts at stride 8 (start_level=1): requesting
        # only stages 1-3 means no unused stride-4 norm for DDP to trip on.
        out_indices=(1, 2, 3),
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(
        in_channels=[128, 320, 512],
        start_level=0,
        add_extra_convs='on_input',
        num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
# 8 GPUs x 2 images; enable with --cfg-options auto_scale_lr.enable=True
auto_scale_lr = dict(enable=False, base_batch_size=16)
