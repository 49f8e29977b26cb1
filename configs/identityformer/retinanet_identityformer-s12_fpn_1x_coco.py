# RetinaNet with IdentityFormer-S12, 1x schedule on COCO: the PoolFormer
# paper's recipe (_base_/retinanet_fpn_1x_coco_adamw.py), with
# drop path 0.1 (configs/identityformer/README.md says why).
_base_ = '../_base_/retinanet_fpn_1x_coco_adamw.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/identityformer/identityformer_s12.pth'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.IdentityFormer',
        arch='s12',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 320, 512]))
