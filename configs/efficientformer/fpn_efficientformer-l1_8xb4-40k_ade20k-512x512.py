# Semantic FPN with EfficientFormer-L1, 40k iterations on ADE20K: the
# EfficientFormer paper's recipe (configs/_base_/
# fpn_8xb4-40k_ade20k-512x512_adamw.py). Weights: see README.md in this
# folder.
_base_ = '../_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py'

checkpoint = 'https://huggingface.co/timm/efficientformer_l1.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.EfficientFormer',
        arch='l1',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 224, 448]))
