# ConvMixer-1536/20 (k9, p7, GELU) with the 1024/20 recipe. ~15 GiB of fp32
# activations per GPU (4 crops of 512x512): no with_cp needed on an 80 GB GPU.
_base_ = './fpn_convmixer-1024-20_8xb4-40k_ade20k-512x512.py'

checkpoint = 'https://github.com/tmp-iclr/convmixer/releases/download/v1.0/convmixer_1536_20_ks9_p7.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='1536_20',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
