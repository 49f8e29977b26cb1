# RetinaNet with EfficientFormer-L1, 1x schedule on COCO: the PoolFormer /
# EfficientFormer detection recipe (configs/_base_/
# retinanet_fpn_1x_coco_adamw.py). The paper publishes no RetinaNet number
# for EfficientFormer, and no released RetinaNet EfficientFormer model
# exists.
_base_ = '../_base_/retinanet_fpn_1x_coco_adamw.py'

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
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 224, 448]))
