# Mask R-CNN with EfficientFormer-L1, 1x schedule on COCO: the recipe of the
# EfficientFormer paper (AdamW lr 2e-4, wd 1e-4, 16 images per iteration,
# FPN on the four stage widths, drop_path 0 as in the original configs).
# Released model: Mask R-CNN EfficientFormer-L1 of
# snap-research/EfficientFormer (detection/README.md, the Google Drive
# folder of COCO weights; its attention carries 25x25 dense biases,
# loaded in bias_mode='dense');
# evaluates with this config after
#   python tools/convert_checkpoint.py efficientformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
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
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 224, 448]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))
# The original schedule warms up linearly from 1e-6 of the learning rate
# (snap-research detection/configs/_base_/schedules/schedule_1x.py), not
# mmdet's 1e-3.
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=12,
        by_epoch=True,
        milestones=[8, 11],
        gamma=0.1)
]
# 8 GPUs x 2 images (keep that total batch: see the README).
auto_scale_lr = dict(enable=False, base_batch_size=16)
