# Mask R-CNN with EfficientFormer-L1, 1x schedule on COCO: the
# EfficientFormer paper's recipe (configs/_base_/
# mask-rcnn_fpn_1x_coco_adamw.py), warming up from 1e-6 as the original.
# Released model: Mask R-CNN EfficientFormer-L1 of
# snap-research/EfficientFormer (detection/README.md, Google Drive; its
# attention carries 25x25 dense biases, loaded in bias_mode='dense');
# evaluates with this config after
#   python tools/convert_checkpoint.py efficientformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = '../_base_/mask-rcnn_fpn_1x_coco_adamw.py'

# ImageNet weights: the paper's dense results start from the 300-epoch L1
# release (79.2% top-1), efficientformer_l1_300d.pth, on Google Drive only
# (snap-research/EfficientFormer README, "L1-300"): download it to this
# path (relative to the working directory) or set checkpoint to your copy;
# a missing file is refused with that hint. timm's and mmpretrain's L1 is
# the 1000-epoch model (80.5%), which would not reproduce the paper.
checkpoint = 'checkpoints/efficientformer_l1_300d.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.EfficientFormer',
        arch='l1',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 224, 448]))
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
