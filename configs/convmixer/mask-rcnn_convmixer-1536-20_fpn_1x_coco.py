# ConvMixer-1536/20 (k9, p7, GELU) with the 1024/20 recipe. At stride 7 the
# backbone saves ~16 GiB of fp32 activations per 800x1344 image (~32 GiB per
# GPU at 2 images): with_cp keeps only the block inputs (~5 GiB per GPU).
_base_ = './mask-rcnn_convmixer-1024-20_fpn_1x_coco.py'

checkpoint = 'https://github.com/tmp-iclr/convmixer/releases/download/v1.0/convmixer_1536_20_ks9_p7.pth.tar'  # noqa: E501
model = dict(
    backbone=dict(
        arch='1536_20',
        with_cp=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
