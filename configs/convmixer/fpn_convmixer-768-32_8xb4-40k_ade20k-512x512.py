# ConvMixer-768/32 (k7, p7, ReLU) with the 1024/20 recipe; blocks 7, 15, 23,
# 31 (evenly spaced) feed strides 4/8/16/32. ~8 GiB of fp32 activations per
# GPU (4 crops of 512x512): no with_cp needed.
_base_ = './fpn_convmixer-1024-20_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://github.com/tmp-iclr/convmixer/releases/download/v1.0/convmixer_768_32_ks7_p7_relu.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='768_32',
        out_indices=(7, 15, 23, 31),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
