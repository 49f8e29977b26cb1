# PoolFormer-S24 with the S12 recipe.
# Released model: Mask R-CNN PoolFormer-S24 of sail-sg/poolformer
# (detection/README.md, Google Drive; norm0/2/4/6 in its backbone);
# evaluates with this config after
#   python tools/convert_checkpoint.py poolformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = './mask-rcnn_poolformer-s12_fpn_1x_coco.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
