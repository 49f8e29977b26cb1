# EfficientFormer-L7 with the L1 recipe.
# Released model: Semantic FPN EfficientFormer-L7 of
# snap-research/EfficientFormer (segmentation/README.md, the Google
# Drive folder of ADE20K weights; 16x16 dense attention biases);
# evaluates with this config after
#   python tools/convert_checkpoint.py efficientformer RELEASED.pth OUT.pth \
#       --whole-model <this config>
_base_ = './fpn_efficientformer-l1_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://huggingface.co/timm/efficientformer_l7.snap_dist_in1k/resolve/main/pytorch_model.bin'  # noqa: E501
model = dict(
    backbone=dict(
        arch='l7',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))
