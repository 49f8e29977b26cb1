# Semantic FPN with PoolFormer-S12, 40k iterations on ADE20K: the PoolFormer
# paper's recipe (configs/_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py).
# Released model: Semantic FPN PoolFormer-S12 of sail-sg/poolformer
# (segmentation/README.md, Google Drive);
# evaluates with this config after
#   python tools/convert_checkpoint.py poolformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = '../_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py'

checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.PoolFormer',
        arch='s12',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
