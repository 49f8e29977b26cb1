# PoolFormer-S24 with the S12 recipe.
# Released model: RetinaNet PoolFormer-S24 of sail-sg/poolformer
# (detection/README.md, Google Drive; trained with FORK_LAST3=1, so
# its backbone has norm2/4/6 only, as out_indices=(1, 2, 3) here);
# evaluates with this config after
#   python tools/convert_checkpoint.py poolformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = './retinanet_poolformer-s12_fpn_1x_coco.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 320, 512]))
