# RetinaNet with EfficientFormer-L1, 1x schedule on COCO: the PoolFormer /
# EfficientFormer detection recipe (configs/_base_/
# retinanet_fpn_1x_coco_adamw.py). The paper publishes no RetinaNet number
# for EfficientFormer. Weights: see README.md in this folder.
_base_ = '../_base_/retinanet_fpn_1x_coco_adamw.py'

checkpoint = 'https://huggingface.co/timm/efficientformer_l1.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.EfficientFormer',
        arch='l1',
        out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 224, 448]))
