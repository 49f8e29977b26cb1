# PoolFormer-S24 with the S12 recipe.
_base_ = './mask-rcnn_poolformer-s12_fpn_1x_coco.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
