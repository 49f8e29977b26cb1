# EfficientFormerV2-S1 with the S0 recipe (drop path 0. as in its
# ImageNet training and the authors' dense configs).
# No released RetinaNet EfficientFormerV2 model exists.
_base_ = './retinanet_efficientformerv2-s0_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/timm/efficientformerv2_s1.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s1',
        drop_path_rate=0.,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 120, 224]))
