# RetinaNet with EfficientFormerV2-S0, 1x schedule on COCO. The authors
# publish no RetinaNet recipe, number or model for EfficientFormerV2:
# the package's RetinaNet recipe (configs/_base_/
# retinanet_fpn_1x_coco_adamw.py: AdamW lr 1e-4, weight decay 1e-4) with
# the backbone set up as in the authors' Mask R-CNN configs (SyncBN, no
# output norms, the ImageNet drop path).
_base_ = '../_base_/retinanet_fpn_1x_coco_adamw.py'

checkpoint = 'https://huggingface.co/timm/efficientformerv2_s0.snap_dist_in1k/resolve/main/model.safetensors'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.EfficientFormerV2',
        arch='s0',
        out_indices=(1, 2, 3),
        drop_path_rate=0.,
        norm_cfg=dict(type='SyncBN'),
        out_norm_cfg=None,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[48, 96, 176]))
