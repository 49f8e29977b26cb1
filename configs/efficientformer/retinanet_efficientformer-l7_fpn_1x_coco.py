# EfficientFormer-L7 with the L1 recipe.
# No released RetinaNet EfficientFormer-L7 model exists.
_base_ = './retinanet_efficientformer-l1_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/timm/efficientformer_l7.snap_dist_in1k/resolve/main/pytorch_model.bin'  # noqa: E501
model = dict(
    backbone=dict(
        arch='l7',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[192, 384, 768]))
