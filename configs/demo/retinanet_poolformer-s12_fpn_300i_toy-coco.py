# The demo: RetinaNet with PoolFormer-S12 trained from scratch on the toy
# COCO-format data (`python tools/make_toy_data.py`), small enough for a
# CPU. Only data, schedule and head width differ from the COCO config.
_base_ = '../poolformer/retinanet_poolformer-s12_fpn_1x_coco.py'

data_root = 'data/toy/coco/'
metainfo = dict(
    classes=('circle', 'square', 'triangle'),
    palette=[(220, 20, 60), (0, 128, 255), (60, 179, 113)])
image_scale = (256, 256)

model = dict(
    backbone=dict(init_cfg=None),  # no downloads: trained from scratch
    neck=dict(out_channels=128),
    bbox_head=dict(
        num_classes=3, in_channels=128, feat_channels=128, stacked_convs=2))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - 30,
        by_epoch=False,
        begin=30,
        end=max_iters)
]
optim_wrapper = dict(optimizer=dict(lr=0.001), clip_grad=dict(max_norm=10.))
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
# 1 process x 4 images
auto_scale_lr = dict(enable=False, base_batch_size=16)
# A fixed seed: the same initial weights and data order on every run.
randomness = dict(seed=0)
