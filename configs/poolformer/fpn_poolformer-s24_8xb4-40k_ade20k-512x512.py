# PoolFormer-S24 with the S12 recipe.
# Released model: Semantic FPN PoolFormer-S24 of sail-sg/poolformer
# (segmentation/README.md, Google Drive);
# evaluates with this config after
#   python tools/convert_checkpoint.py poolformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = './fpn_poolformer-s12_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
