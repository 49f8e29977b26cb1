# What every config of the package shares. The import registers the
# backbones and hooks (and makes mmengine's checkpoints load under
# torch >= 2.6: mixer_backbones/compat.py). The hooks: the neck must fit
# the backbone (checked before anything runs); the training log shows
# images per second and, without GPUs, peak process memory; checkpoints
# are atomic, resume is exact and SIGTERM/SIGUSR1 stop a run with a
# checkpoint (RunStateHook).
custom_imports = dict(imports=['mixer_backbones'], allow_failed_imports=False)
custom_hooks = [
    dict(type='mixer_backbones.NeckChannelsCheckHook'),
    dict(type='mixer_backbones.ThroughputHook'),
    dict(type='mixer_backbones.RunStateHook'),
]
