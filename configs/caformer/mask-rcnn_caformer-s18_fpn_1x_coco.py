# Mask R-CNN with CAFormer-S18, 1x schedule on COCO: the PoolFormer
# paper's recipe (_base_/mask-rcnn_fpn_1x_coco_adamw.py), with
# drop path 0.1 (configs/caformer/README.md says why).
_base_ = '../_base_/mask-rcnn_fpn_1x_coco_adamw.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.CAFormer',
        arch='s18',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
