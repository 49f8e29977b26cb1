# Semantic FPN with EfficientFormer-L1, 40k iterations on ADE20K: the
# EfficientFormer paper's recipe (configs/_base_/
# fpn_8xb4-40k_ade20k-512x512_adamw.py).
# Released model: Semantic FPN EfficientFormer-L1 of
# snap-research/EfficientFormer (segmentation/README.md, Google Drive;
# 16x16 dense attention biases);
# evaluates with this config after
#   python tools/convert_checkpoint.py efficientformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = '../_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py'

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
