# PoolFormerV2-M48 with the S12 recipe and drop path 0.3.
_base_ = './mask-rcnn_poolformerv2-s12_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/poolformerv2/poolformerv2_m48.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='m48',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))
