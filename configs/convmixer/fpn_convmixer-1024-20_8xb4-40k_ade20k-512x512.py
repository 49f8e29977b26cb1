# Semantic FPN with ConvMixer-1024/20 (k9, p14, GELU), 40k iterations on
# ADE20K, on the recipe of the package's other backbones (configs/_base_/
# fpn_8xb4-40k_ade20k-512x512_adamw.py); why, and the memory: README.md
# here. Blocks 4, 9, 14, 19 (the default) feed strides 4/8/16/32.
_base_ = '../_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py'

checkpoint = 'https://github.com/tmp-iclr/convmixer/releases/download/v1.0/convmixer_1024_20_ks9_p14.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.ConvMixer',
        arch='1024_20',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[256, 256, 256, 256]))
