# Semantic FPN with EfficientFormerV2-S0, 40k iterations on ADE20K: the
# EfficientFormerV2 authors' recipe (snap-research segmentation/configs/
# sem_fpn/fpn_efficientformerv2_*): AdamW lr 2e-4, weight decay 1e-4, poly
# 0.9 down to 1e-6, 32 images per iteration (8 GPUs x 4); the backbone's
# BatchNorms synchronised and trained, no output norms, the ImageNet drop
# path. See README.md.
# Released model: the authors' Semantic FPN EfficientFormerV2
# (segmentation/README.md, Google Drive; 16x16 dense attention biases);
# evaluates with this config after
#   python tools/convert_checkpoint.py efficientformer_v2 RELEASED.pth \
#       OUT.pth --whole-model <this config>
_base_ = '../_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py'

checkpoint = 'https://huggingface.co/timm/efficientformerv2_s0.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.EfficientFormerV2',
        arch='s0',
        drop_path_rate=0.,
        norm_cfg=dict(type='SyncBN'),
        out_norm_cfg=None,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[32, 48, 96, 176]))
param_scheduler = [
    dict(type='PolyLR', power=0.9, begin=0, end=40000, eta_min=1e-6,
         by_epoch=False)
]
