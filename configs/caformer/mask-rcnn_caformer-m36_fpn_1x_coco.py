# CAFormer-M36 with the S18 recipe and drop path 0.2.
_base_ = './mask-rcnn_caformer-s18_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_m36.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='m36',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 576]))
