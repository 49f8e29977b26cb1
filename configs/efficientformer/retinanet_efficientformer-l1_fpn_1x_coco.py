# RetinaNet with EfficientFormer-L1, 1x schedule on COCO: the PoolFormer /
# EfficientFormer detection recipe (AdamW lr 1e-4, wd 1e-4, 16 images per
# iteration, drop_path 0). The paper publishes no RetinaNet number for
# EfficientFormer.
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
# 8 GPUs x 2 images; enable with --cfg-options auto_scale_lr.enable=True
auto_scale_lr = dict(enable=False, base_batch_size=16)
