# RetinaNet with PoolFormer-S12, 1x schedule on COCO: the PoolFormer paper's
# recipe (configs/_base_/retinanet_fpn_1x_coco_adamw.py).
# Released model: RetinaNet PoolFormer-S12 of sail-sg/poolformer
# (detection/README.md, Google Drive; trained with FORK_LAST3=1, so its
# backbone has norm2/4/6 only, as out_indices=(1, 2, 3) here);
# evaluates with this config after
#   python tools/convert_checkpoint.py poolformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
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
