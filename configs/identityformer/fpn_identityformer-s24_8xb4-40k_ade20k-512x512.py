# IdentityFormer-S24 with the S12 recipe and drop path 0.1.
_base_ = './fpn_identityformer-s12_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/identityformer/identityformer_s24.pth'  # noqa: E501
model = dict(
    backbone=dict(
        arch='s24',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
