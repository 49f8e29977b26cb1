# Semantic FPN, 40k iterations on ADE20K, with the segmentation recipe of
# the PoolFormer and EfficientFormer papers: AdamW lr 2e-4, weight decay
# 1e-4, poly 0.9, 32 images per iteration (8 GPUs x 4), 512x512 crops from
# (2048, 512) resized with ratio 0.5-2.0; test images resized to a multiple
# of 32.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    './mixer_backbones.py',
]
crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=150))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# mmseg's schedule also sets a top-level SGD `optimizer` that nothing
# reads; replaced so that the resolved config names only the one in use.
optimizer = dict(_delete_=True, type='AdamW', lr=0.0002, weight_decay=0.0001)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001))
param_scheduler = [
    dict(type='PolyLR', power=0.9, begin=0, end=40000, eta_min=0.0,
         by_epoch=False)
]
# 8 GPUs x 4 images (keep that total batch: see docs/model_zoo.md).
auto_scale_lr = dict(enable=False, base_batch_size=32)
