# PoolFormer-M36 with the S12 recipe (no published result for it).
# No released RetinaNet PoolFormer-M36 model exists.
_base_ = './retinanet_poolformer-s12_fpn_1x_coco.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m36.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='m36',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[192, 384, 768]))
