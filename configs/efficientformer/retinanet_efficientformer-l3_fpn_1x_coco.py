# EfficientFormer-L3 with the L1 recipe.
# No released RetinaNet EfficientFormer-L3 model exists.
_base_ = './retinanet_efficientformer-l1_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/timm/efficientformer_l3.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        arch='l3',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 320, 512]))
