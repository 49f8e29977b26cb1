# EfficientFormerV2-L with the S0 recipe (drop path 0.1 as in its
# ImageNet training and the authors' dense configs).
# Released model: the authors' Semantic FPN EfficientFormerV2-L (16x16
# dense attention biases); evaluates with this config after conversion
# (see the S0 config).
_base_ = './fpn_efficientformerv2-s0_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://huggingface.co/timm/efficientformerv2_l.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[40, 80, 192, 384]))
