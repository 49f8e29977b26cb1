"""Installation script of mixer_backbones.

The heavy stack (torch, mmcv with compiled ops, mmdet, mmseg) is installed by
``tools/setup_env.sh``: mmcv 2.1.0 has to be compiled against the installed
torch, which a plain ``pip install`` cannot do.  The requirements below are
the ones pip can resolve on its own.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_version() -> str:
    namespace = {}
    with open(osp.join('mixer_backbones', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mixer_backbones',
    version=read_version(),
    description=('PoolFormer, EfficientFormer and ConvMixer backbones for '
                 'mmdet 3.x and mmsegmentation 1.x'),
    long_description=open('README.md').read()
    if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(exclude=('tests', 'tools', 'configs')),
    install_requires=[
        'torch>=2.0',
        'mmengine>=0.10.0,<1.0',
        'numpy',
        # mmdet's analysis tools (benchmark.py) import it.
        'psutil',
        'safetensors',
    ],
    extras_require={
        # The hosts; mmcv 2.1.0 must be built with ops: tools/setup_env.sh.
        'hosts': [
            'mmcv==2.1.0', 'mmdet==3.3.0', 'mmsegmentation==1.2.2', 'ftfy',
            'regex', 'pycocotools', 'timm>=1.0'
        ],
        'tests':
        ['pytest>=7', 'timm>=1.0', 'pycocotools', 'safetensors', 'flake8'],
        'benchmark': ['mmpretrain==1.2.0'],
        # ONNX export (torch's dynamo exporter) and its check.
        'export': ['onnx', 'onnxscript', 'onnxruntime'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
