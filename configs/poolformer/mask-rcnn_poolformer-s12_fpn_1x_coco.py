# Mask R-CNN with PoolFormer-S12, 1x schedule on COCO: the PoolFormer
# paper's recipe (configs/_base_/mask-rcnn_fpn_1x_coco_adamw.py).
# Released model: Mask R-CNN PoolFormer-S12 of sail-sg/poolformer
# (detection/README.md, Google Drive; norm0/2/4/6 in its backbone);
# evaluates with this config after
#   python tools/convert_checkpoint.py poolformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = '../_base_/mask-rcnn_fpn_1x_coco_adamw.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.PoolFormer',
        arch='s12',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
