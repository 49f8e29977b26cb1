# Semantic FPN with IdentityFormer-S12, 40k iterations on ADE20K: the
# PoolFormer paper's recipe (_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py),
# with drop path 0.1 (configs/identityformer/README.md says why).
_base_ = '../_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/identityformer/identityformer_s12.pth'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.IdentityFormer',
        arch='s12',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
