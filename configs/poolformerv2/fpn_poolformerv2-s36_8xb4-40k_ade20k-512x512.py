# PoolFormerV2-S36 with the S12 recipe and drop path 0.2.
_base_ = './fpn_poolformerv2-s12_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/poolformerv2/poolformerv2_s36.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s36',
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
