# Mask R-CNN with EfficientFormer-L1, 1x schedule on COCO: the recipe of the
# EfficientFormer paper (AdamW lr 2e-4, wd 1e-4, 16 images per iteration,
# FPN on the four stage widths, drop_path 0 as in the original configs).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
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

# ImageNet-1k weights (distilled, 300 epochs) as converted by timm. The
# snap-research release files are on Google Drive only: download
# efficientformer_l1_300d.pth from the snap-research/EfficientFormer README
# and set checkpoint='path/to/efficientformer_l1_300d.pth' (the layout,
# snap-research, timm or mmpretrain, is detected from the keys). mmpretrain's
# conversion also loads directly:
# https://download.openmmlab.com/mmclassification/v0/efficientformer/efficientformer-l1_3rdparty_in1k_20220915-cc3e1ac6.pth  # noqa: E501
checkpoint = 'https://huggingface.co/timm/efficientformer_l1.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
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
# 8 GPUs x 2 images; enable with --cfg-options auto_scale_lr.enable=True
auto_scale_lr = dict(enable=False, base_batch_size=16)
