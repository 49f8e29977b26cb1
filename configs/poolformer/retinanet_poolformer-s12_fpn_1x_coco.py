# RetinaNet with PoolFormer-S12, 1x schedule on COCO: the PoolFormer paper's
# recipe (configs/_base_/retinanet_fpn_1x_coco_adamw.py).
_base_ = '../_base_/retinanet_fpn_1x_coco_adamw.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.PoolFormer',
        arch='s12',
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 320, 512]))
