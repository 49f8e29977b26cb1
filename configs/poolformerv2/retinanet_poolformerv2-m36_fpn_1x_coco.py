# PoolFormerV2-M36 with the S12 recipe and drop path 0.2.
_base_ = './retinanet_poolformerv2-s12_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/poolformerv2/poolformerv2_m36.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='m36',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[192, 384, 768]))
