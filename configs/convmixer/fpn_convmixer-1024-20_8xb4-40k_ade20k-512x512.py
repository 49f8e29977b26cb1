# Semantic FPN with ConvMixer-1024/20 (k9, p14, GELU), 40k iterations on
# ADE20K. No dense-prediction result for ConvMixer is published anywhere;
# this is the recipe of the package's other backbones (PoolFormer /
# EfficientFormer papers), so that the backbone is the only thing that
# changes:
# - AdamW (the standard for non-ResNet backbones in mmseg), lr 2e-4, weight
#   decay 1e-4, poly 0.9 over 40k iterations, 32 images per iteration
#   (8 GPUs x 4), 512x512 crops; test images resized to a multiple of 32.
# - Weight decay 1e-4 rather than the 0.05 of the Swin/ConvNeXt recipes:
#   0.05 is meant to be paired with no decay on norms, and ConvMixer has two
#   BatchNorms per block; with 1e-4 the decoupled per-step shrink (lr x wd
#   <= 2e-8) is negligible on BN affines and biases, so no paramwise_cfg.
# - drop_path 0, nothing frozen, BatchNorm in train mode.
# - ConvMixer is isotropic (stride 14 here); its `pyramid` resamples blocks
#   4, 9, 14, 19 (evenly spaced, the earliest to the finest level) to
#   strides 4/8/16/32 with a new 1x1 projection to 256 channels + GroupNorm
#   per level; the FPN uses all four, so nothing is unused under DDP.
# - Memory (fp32; activations saved for backward by the backbone, measured
#   with saved-tensor hooks) for 4 crops of 512x512 per GPU: 1536/20
#   15.4 GiB, 768/32 8.1 GiB, 1024/20 2.6 GiB: all fit an 80 GB (or 40 GB)
#   GPU without with_cp, which would cost ~30% more backbone compute. Turn
#   it on for small GPUs with --cfg-options model.backbone.with_cp=True.
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
checkpoint = 'https://github.com/tmp-iclr/convmixer/releases/download/v1.0/convmixer_1024_20_ks9_p14.pth.tar'  # noqa: E501
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.ConvMixer',
        arch='1024_20',
        out_indices=(4, 9, 14, 19),
        pyramid=dict(mode='interpolate', strides=(4, 8, 16, 32), norm='gn'),
        out_channels=256,
        with_cp=False,
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[256, 256, 256, 256]),
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
