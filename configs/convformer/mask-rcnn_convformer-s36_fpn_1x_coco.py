# ConvFormer-S36 with the S18 recipe and drop path 0.2.
_base_ = './mask-rcnn_convformer-s18_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s36.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s36',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
