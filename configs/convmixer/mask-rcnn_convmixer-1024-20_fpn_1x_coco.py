# Mask R-CNN with ConvMixer-1024/20 (k9, p14, GELU), 1x schedule on COCO, on
# the recipe of the package's other backbones (configs/_base_/
# mask-rcnn_fpn_1x_coco_adamw.py); why, and the memory: README.md here.
# Blocks 4, 9, 14, 19 (evenly spaced, the default) feed strides 4/8/16/32
# through 256-channel pyramid levels.
_base_ = '../_base_/mask-rcnn_fpn_1x_coco_adamw.py'

checkpoint = 'https://github.com/tmp-iclr/convmixer/releases/download/v1.0/convmixer_1024_20_ks9_p14.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.ConvMixer',
        arch='1024_20',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[256, 256, 256, 256]))
