# EfficientFormerV2-S2 with the S0 recipe (drop path 0.02 as in its
# ImageNet training and the authors' dense configs).
# Released model: the authors' Semantic FPN EfficientFormerV2-S2 (16x16
# dense attention biases); evaluates with this config after conversion
# (see the S0 config).
_base_ = './fpn_efficientformerv2-s0_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://huggingface.co/timm/efficientformerv2_s2.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s2',
        drop_path_rate=0.02,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[32, 64, 144, 288]))
