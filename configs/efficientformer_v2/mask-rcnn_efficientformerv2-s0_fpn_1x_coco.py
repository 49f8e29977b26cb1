# Mask R-CNN with EfficientFormerV2-S0, 1x schedule on COCO: the
# EfficientFormerV2 authors' recipe (snap-research detection/configs/
# mask_rcnn_efficientformerv2_*): AdamW lr 2e-4 with weight decay 0.05
# (not the 1e-4 of V1 and PoolFormer), 12 epochs, steps at 8 and 11, a
# 500-iteration warm-up from 1e-6 of the learning rate, 16 images per
# iteration; the backbone's BatchNorms synchronised across GPUs and
# trained, no output norms, drop path as in ImageNet training (0 for
# S0/S1, 0.02 S2, 0.1 L). See README.md.
# Released model: the authors' Mask R-CNN EfficientFormerV2 (detection/
# README.md, Google Drive; 25x25 dense attention biases, loaded in
# bias_mode='dense'); evaluates with this config after
#   python tools/convert_checkpoint.py efficientformer_v2 RELEASED.pth \
#       OUT.pth --whole-model <this config>
_base_ = '../_base_/mask-rcnn_fpn_1x_coco_adamw.py'

# timm's conversion of the authors' 450-epoch ImageNet release
# (eformer_s0_450.pth, the file the original configs load).
checkpoint = 'https://huggingface.co/timm/efficientformerv2_s0.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.EfficientFormerV2',
        arch='s0',
        drop_path_rate=0.,
        norm_cfg=dict(type='SyncBN'),
        out_norm_cfg=None,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[32, 48, 96, 176]))
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
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
