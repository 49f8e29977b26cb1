# EfficientFormerV2-L with the S0 recipe (drop path 0.1 as in its
# ImageNet training and the authors' dense configs).
# Released model: the authors' Mask R-CNN EfficientFormerV2-L (25x25 dense
# attention biases); evaluates with this config after conversion (see
# the S0 config).
_base_ = './mask-rcnn_efficientformerv2-s0_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/timm/efficientformerv2_l.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        arch='l',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[40, 80, 192, 384]))
