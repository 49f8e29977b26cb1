# EfficientFormerV2-S2 with the S0 recipe (drop path 0.02 as in its
# ImageNet training and the authors' dense configs).
# No released RetinaNet EfficientFormerV2 model exists.
_base_ = './retinanet_efficientformerv2-s0_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/timm/efficientformerv2_s2.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s2',
        drop_path_rate=0.02,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 144, 288]))
