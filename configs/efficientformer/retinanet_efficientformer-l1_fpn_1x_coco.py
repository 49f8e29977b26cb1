# RetinaNet with EfficientFormer-L1, 1x schedule on COCO: the PoolFormer /
# EfficientFormer detection recipe (AdamW lr 1e-4, wd 1e-4, 16 images per
# iteration, drop_path 0). The paper publishes no RetinaNet number for
# EfficientFormer.
# No released RetinaNet EfficientFormer-L1 model exists.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mixer_backbones'], allow_failed_imports=False)
# The neck must fit the backbone (checked before anything runs); the log
# shows images per second and, without GPUs, peak process memory.
custom_hooks = [
    dict(type='mixer_backbones.NeckChannelsCheckHook'),
    dict(type='mixer_backbones.ThroughputHook'),
]

# ImageNet-1k weights: the paper's dense results start from the 300-epoch
# L1 release (79.2% top-1), efficientformer_l1_300d.pth, on Google Drive
# only (snap-research/EfficientFormer README, "L1-300"): download it to
# this path (relative to the working directory) or set checkpoint to your
# copy; a missing file is refused with that hint. timm's
# efficientformer_l1.snap_dist_in1k (and mmpretrain's L1) is the
# 1000-epoch model (80.5%), which would not reproduce the paper's numbers.
checkpoint = 'checkpoints/efficientformer_l1_300d.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.EfficientFormer',
        arch='l1',
        # The FPN starts at stride 8 (the original start_level=1): requesting
        # only stages 1-3 means no unused stride-4 norm for DDP to trip on.
        out_indices=(1, 2, 3),
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(
        in_channels=[96, 224, 448],
        start_level=0,
        add_extra_convs='on_input',
        num_outs=5))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
# 8 GPUs x 2 images (keep that total batch: see the README).
auto_scale_lr = dict(enable=False, base_batch_size=16)
