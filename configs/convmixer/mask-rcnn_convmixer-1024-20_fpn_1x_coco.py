# Mask R-CNN with ConvMixer-1024/20 (k9, p14, GELU), 1x schedule on COCO.
# No dense-prediction result for ConvMixer is published anywhere; this is
# the recipe of the package's other backbones (PoolFormer / EfficientFormer
# papers), so that the backbone is the only thing that changes:
# - AdamW (the standard for non-ResNet backbones in mmdet), lr 2e-4 for
#   Mask R-CNN, weight decay 1e-4, 500-iteration linear warm-up, steps at
#   epochs 8 and 11, 16 images per iteration (8 GPUs x 2), 1333x800, flip.
# - Weight decay 1e-4 rather than the 0.05 of the Swin/ConvNeXt recipes:
#   0.05 is meant to be paired with no decay on norms, and ConvMixer has two
#   BatchNorms per block; with 1e-4 the decoupled per-step shrink (lr x wd
#   <= 2e-8) is negligible on BN affines and biases, so no paramwise_cfg.
# - drop_path 0, nothing frozen, BatchNorm in train mode (each GPU
#   normalises over 2 images x ~57x96 positions at stride 14).
# - ConvMixer is isotropic (stride 14 here); its `pyramid` resamples blocks
#   4, 9, 14, 19 (evenly spaced, the earliest to the finest level) to
#   strides 4/8/16/32 with a new 1x1 projection to 256 channels + GroupNorm
#   per level; the FPN uses all four, so nothing is unused under DDP.
# - Memory (fp32, as mmdet trains by default; activations saved for backward
#   by the backbone, measured with saved-tensor hooks): per 800x1344 image
#   1536/20 15.8 GiB, 768/32 8.3 GiB, 1024/20 2.7 GiB. Per GPU (2 images,
#   landscape and portrait never mixed by AspectRatioBatchSampler):
#   1536/20 ~32 GiB before FPN, heads, gradients and allocator slack, about
#   half an 80 GB GPU and over a 40 GB one, so its configs set with_cp=True
#   (~5 GiB kept: the 21 block inputs); 768/32 ~17 GiB and 1024/20 ~5 GiB fit
#   easily without it (with_cp costs ~30% more backbone compute). Turn it on
#   for small GPUs with --cfg-options model.backbone.with_cp=True.
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

checkpoint = 'https://github.com/tmp-iclr/convmixer/releases/download/v1.0/convmixer_1024_20_ks9_p14.pth.tar'  # noqa: E501
model = dict(
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
    neck=dict(in_channels=[256, 256, 256, 256]))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))
# 8 GPUs x 2 images; enable with --cfg-options auto_scale_lr.enable=True
auto_scale_lr = dict(enable=False, base_batch_size=16)
