# RetinaNet 1x on COCO with the detection recipe of the PoolFormer and
# EfficientFormer papers: AdamW lr 1e-4, weight decay 1e-4, 12 epochs with
# steps at 8 and 11 and a 500-iteration linear warm-up (mmdet's 1x
# schedule), 16 images per iteration (8 GPUs x 2), 1333x800, flip 0.5.
# The FPN takes the backbone's strides 8/16/32 (the original start_level=1:
# a config requests only those three levels, so DDP sees no unused
# parameter) and adds its extra levels on them.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './mixer_backbones.py',
]
model = dict(
    neck=dict(start_level=0, add_extra_convs='on_input', num_outs=5))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0001, weight_decay=0.0001))
# 8 GPUs x 2 images (keep that total batch: see docs/model_zoo.md).
auto_scale_lr = dict(enable=False, base_batch_size=16)
