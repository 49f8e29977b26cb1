# Semantic FPN with CAFormer-S18, 40k iterations on ADE20K: the PoolFormer
# paper's recipe (_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py), with
# drop path 0.1 (configs/caformer/README.md says why).
# Memory: global attention over every token of stages 2-3 (4,200 tokens at
# stride 16 for 800x1344) through scaled_dot_product_attention. Peak memory
# of a forward and backward of this backbone, batch 1, fp32, measured on the
# CPU (python tools/peak_memory.py caformer --arch s18 --attention fused
# math): 2.8 GiB at 800x1344 and 0.7 GiB at 512x512 with the fused kernel,
# 9.9 GiB and 1.2 GiB with the unfused one (tokens x tokens matrices stored).
_base_ = '../_base_/fpn_8xb4-40k_ade20k-512x512_adamw.py'

checkpoint = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa: E501
model = dict(
    backbone=dict(
        _delete_=True,
        type='mixer_backbones.CAFormer',
        arch='s18',
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 512]))
