# EfficientFormer-L7 with the L1 recipe.
# Released model: Mask R-CNN EfficientFormer-L7 of
# snap-research/EfficientFormer (detection/README.md, the Google Drive
# folder of COCO weights; its attention carries 25x25 dense biases,
# loaded in bias_mode='dense');
# evaluates with this config after
#   python tools/convert_checkpoint.py efficientformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = './mask-rcnn_efficientformer-l1_fpn_1x_coco.py'

checkpoint = 'https://huggingface.co/timm/efficientformer_l7.snap_dist_in1k/resolve/main/pytorch_model.bin'  # noqa: E501
model = dict(
    backbone=dict(
        arch='l7',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))
