# Semantic FPN with EfficientFormer-L1, 40k iterations on ADE20K: the recipe
# of the EfficientFormer paper (AdamW lr 2e-4, wd 1e-4, poly 0.9, 32 images
# per iteration, 512x512 crops, drop_path 0; test images resized to a
# multiple of 32).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
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

crop_size = (512, 512)
# ImageNet-1k weights (distilled, 300 epochs) as converted by timm. The
# snap-research release files are on Google Drive only: download
# efficientformer_l1_300d.pth from the snap-research/EfficientFormer README
# and set checkpoint='path/to/efficientformer_l1_300d.pth' (the layout,
# snap-research, timm or mmpretrain, is detected from the keys). mmpretrain's
# conversion also loads directly:
# https://download.openmmlab.com/mmclassification/v0/efficientformer/efficientformer-l1_3rdparty_in1k_20220915-cc3e1ac6.pth  # noqa: E501
checkpoint = 'https://huggingface.co/timm/efficientformer_l1.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.EfficientFormer',
        arch='l1',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 224, 448]),
    decode_head=dict(num_classes=150))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))
param_scheduler = [
    dict(type='PolyLR', power=0.9, begin=0, end=40000, eta_min=0.0,
         by_epoch=False)
]
# 8 GPUs x 4 images; enable with --cfg-options auto_scale_lr.enable=True
auto_scale_lr = dict(enable=False, base_batch_size=32)
