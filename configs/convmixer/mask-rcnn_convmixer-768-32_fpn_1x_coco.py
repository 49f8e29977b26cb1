# ConvMixer-768/32 (k7, p7, ReLU) with the 1024/20 recipe; blocks 7, 15, 23,
# 31 (evenly spaced) feed strides 4/8/16/32. ~17 GiB of fp32 activations per
# GPU (2 images of 800x1344): no with_cp needed on an 80 GB GPU.
_base_ = './mask-rcnn_convmixer-1024-20_fpn_1x_coco.py'

checkpoint = 'https://github.com/tmp-iclr/convmixer/releases/download/v1.0/convmixer_768_32_ks7_p7_relu.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='768_32',
        out_indices=(7, 15, 23, 31),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
