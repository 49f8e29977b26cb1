"""Optional backend-specific kernels, applied by an explicit call; the
models never need them (see :mod:`mixer_backbones.ops.cpu`)."""
