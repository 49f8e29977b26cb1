# IdentityFormer-M48 with the S12 recipe and drop path 0.3.
_base_ = './fpn_identityformer-s12_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/identityformer/identityformer_m48.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='m48',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))
