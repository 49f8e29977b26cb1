"""The package's own registry, a child of mmengine's ``MODELS``.

Types registered here are reached from any host scope as
``type='mixer_backbones.<Class>'``: mmengine resolves the ``scope.`` prefix
by searching the registry tree from the root, so mmdet and mmseg configs
(whose default scopes are ``mmdet`` and ``mmseg``) find them without this
package importing either host.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mixer_backbones',
    locations=['mixer_backbones.models'])

# Runner hooks, reached the same way: type='mixer_backbones.<Hook>'.
HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='mixer_backbones',
    locations=['mixer_backbones.hooks'])
