"""An mmcv built with CUDA ops (``FORCE_CUDA=1 bash tools/setup_env.sh``)
carries the CUDA kernels of the ops our detectors need, and imports on a
machine without a GPU. Skipped unless the installed mmcv is such a build."""
import importlib
import shutil
import subprocess

import pytest
import torch

ops = pytest.importorskip('mmcv.ops')
BUILT_WITH = ops.get_compiling_cuda_version()
pytestmark = pytest.mark.skipif(
    BUILT_WITH == 'not available',
    reason='mmcv is built without CUDA ops (FORCE_CUDA=1 builds them)')


def extension_path():
    return importlib.import_module('mmcv._ext').__file__


def test_built_for_torchs_cuda_version():
    assert torch.version.cuda is not None
    assert BUILT_WITH.split('.')[:2] == torch.version.cuda.split('.')[:2]


@pytest.mark.skipif(shutil.which('nm') is None, reason='needs binutils nm')
def test_exports_the_cuda_launchers_of_nms_and_roi_align():
    symbols = subprocess.run(
        ['nm', '-D', '--defined-only', '-C', extension_path()],
        check=True, capture_output=True, text=True).stdout
    missing = [
        launcher for launcher in ('NMSCUDAKernelLauncher(',
                                  'ROIAlignForwardCUDAKernelLauncher(',
                                  'ROIAlignBackwardCUDAKernelLauncher(')
        if launcher not in symbols
    ]
    assert not missing, f'{missing} not exported by {extension_path()}'


def test_carries_gpu_code():
    """The extension holds compiled device code (nvcc's fat binary), and
    cuobjdump, where installed, lists it for an sm_* architecture."""
    path = extension_path()
    with open(path, 'rb') as f:
        has_fatbin = b'.nv_fatbin\0' in f.read()
    assert has_fatbin, f'no .nv_fatbin section in {path}'
    if shutil.which('cuobjdump'):
        listing = subprocess.run(['cuobjdump', '--list-elf', path],
                                 check=True, capture_output=True,
                                 text=True).stdout
        assert 'sm_' in listing, listing[:500]


def test_cpu_kernels_still_run_without_a_gpu():
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.],
                          [20., 20., 30., 30.]])
    _, keep = ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
