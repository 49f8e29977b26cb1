# PoolFormer-M48 with the S12 recipe.
# Released model: Semantic FPN PoolFormer-M48 of sail-sg/poolformer
# (segmentation/README.md, Google Drive);
# evaluates with this config after
#   python tools/convert_checkpoint.py poolformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = './fpn_poolformer-s12_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m48.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='m48',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))
