"""PoolFormer (MetaFormer with a pooling token mixer) as a dense backbone."""
import re
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..checkpoint import CheckpointError
from ..registry import MODELS
from .base import BaseDenseBackbone, StateDict
from .layers import (ConvMlp, DropPath, GroupNorm1, LayerScale, PoolingMixer,
                     add_residual)
from .validation import check_arguments


def _inverse_std(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(var + eps)`` over (C, H, W) per sample, shape (N, 1, 1, 1).

    Without autograd, group norm's kernel computes it in one pass, several
    times faster than ``var_mean`` on a channels-last map; its statistics
    outputs have no gradient, so training uses ``var_mean``.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        var, _ = torch.var_mean(x, dim=(1, 2, 3), keepdim=True, correction=0)
        return torch.rsqrt(var + eps)
    batch, channels, height, width = x.shape
    rstd = torch.native_group_norm(x, None, None, batch, channels,
                                   height * width, 1, eps)[2]
    return rstd.view(batch, 1, 1, 1)


class PoolFormerBlock(nn.Module):
    """``x + ls1 * (pool(GN(x)) - GN(x))``, then ``x + ls2 * MLP(GN(x))``.

    The token-mixing branch never materialises ``GN(x)``: with one group,
    ``GN(x) = gamma * (x - mean) / sigma + beta`` per sample, and an average
    that excludes padding commutes with a per-channel affine map, so
    ``pool(GN(x)) - GN(x) = (gamma / sigma) * (pool(x) - x)``. One
    reduction gives ``sigma``; the branch is then a pooling, a subtraction
    and one per-(sample, channel) scale that also absorbs the layer scale
    and the drop-path mask. ``norm1.bias`` cancels and is therefore not
    trained. ``fused_token_mixer=False`` runs the textbook form instead
    (same values within float rounding).

    Args:
        channels (int): Channels of the block.
        mlp_ratio (float): Hidden width of the MLP over ``channels``.
        pool_size (int): Pooling window of the token mixer.
        drop_path (float): Stochastic depth of both branches.
        layer_scale_init_value (float, optional): Initial layer scale;
            ``None`` for no layer scale.
        fused_token_mixer (bool): Use the fused token-mixing branch.
            Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 mlp_ratio: float = 4.,
                 pool_size: int = 3,
                 drop_path: float = 0.,
                 layer_scale_init_value: Optional[float] = 1e-5,
                 fused_token_mixer: bool = False) -> None:
        super().__init__()
        self.norm1 = GroupNorm1(channels)
        self.token_mixer = PoolingMixer(pool_size)
        self.layer_scale1 = self._layer_scale(channels, layer_scale_init_value)
        self.norm2 = GroupNorm1(channels)
        self.mlp = ConvMlp(channels, int(channels * mlp_ratio), act='gelu')
        self.layer_scale2 = self._layer_scale(channels, layer_scale_init_value)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else (
            nn.Identity())
        self.fused_token_mixer = fused_token_mixer
        self.deployed = False
        if fused_token_mixer:
            # The shift of norm1 cancels in pool(GN(x)) - GN(x): it has no
            # effect on the output (its gradient is exactly zero in the
            # textbook form too), so it is not trained, and DDP does not
            # wait for a gradient the fused form never produces.
            self.norm1.bias.requires_grad_(False)

    @staticmethod
    def _layer_scale(channels: int, init_value: Optional[float]) -> nn.Module:
        if init_value is None:
            return nn.Identity()
        return LayerScale(channels, init_value)

    def _token_mixing(self, x: torch.Tensor) -> torch.Tensor:
        """``drop_path(ls1 * (pool(GN(x)) - GN(x)))`` without ``GN(x)``."""
        if not self.fused_token_mixer:
            return self.drop_path(
                self.layer_scale1(self.token_mixer(self.norm1(x))))
        return self.token_mixer(x) * self._mixing_scale(x)

    def _mixing_scale(self, x: torch.Tensor) -> torch.Tensor:
        """``ls1 * gamma1 / sigma`` (with the drop-path mask), (N, C, 1, 1)."""
        scale = self.norm1.weight.view(1, -1, 1, 1) * _inverse_std(
            x, self.norm1.eps)
        if isinstance(self.layer_scale1, LayerScale):
            scale = scale * self.layer_scale1.weight.view(1, -1, 1, 1)
        if isinstance(self.drop_path, DropPath):
            scale = self.drop_path(scale)  # per-sample mask and rescale
        return scale.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deployed:
            # x + s * (pool(x) - x) in one pass over x.
            x = torch.lerp(x, self.token_mixer.pool(x), self._mixing_scale(x))
            return self.mlp.forward_residual(self.norm2(x), x)
        x = add_residual(x, self._token_mixing(x))
        return add_residual(
            x, self.drop_path(self.layer_scale2(self.mlp(self.norm2(x)))))

    def switch_to_deploy(self) -> None:
        """Inference form: the fused token mixer, the second layer scale
        folded into ``mlp.fc2``, and the MLP run with its residual addition
        (fused on the CPU; see :meth:`ConvMlp.forward_residual`)."""
        if self.deployed:
            return
        self.fused_token_mixer = True
        if isinstance(self.layer_scale2, LayerScale):
            self.mlp.fold_output_scale(self.layer_scale2.weight)
            self.layer_scale2 = nn.Identity()
        self.drop_path = nn.Identity()
        self.deployed = True


class PoolFormerStage(nn.Module):
    """An optional stride-2 downsample conv followed by PoolFormer blocks."""

    def __init__(self, downsample: Optional[nn.Module],
                 blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.downsample = downsample if downsample is not None else (
            nn.Identity())
        self.blocks = nn.Sequential(*blocks)


@MODELS.register_module()
class PoolFormer(BaseDenseBackbone):
    """PoolFormer backbone with a 4/8/16/32 feature pyramid.

    From `MetaFormer Is Actually What You Need for Vision
    <https://arxiv.org/abs/2111.11418>`_: a conv stem of stride 4, then
    four stages of blocks that mix tokens by average pooling, with a
    stride-2 conv between stages. Each requested level gets a new
    GroupNorm(1, C), as in the paper's detection and segmentation models.

    Weights load from the sail-sg release, timm / Hugging Face files
    (``.pth`` or ``.safetensors``), mmpretrain files and this package's own
    layout (see :meth:`convert_checkpoint`) through
    ``init_cfg=dict(type='Pretrained', checkpoint=PATH_OR_URL)``.

    Args:
        arch (str | dict): ``'s12'``, ``'s24'``, ``'s36'``, ``'m36'``,
            ``'m48'`` or a dict with keys ``depths``, ``widths`` and
            ``layer_scale_init_value``. Defaults to ``'s12'``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (Sequence[int] | int): Stages (0-3, negative allowed)
            whose outputs are returned, at strides 4, 8, 16 and 32.
            Defaults to ``(0, 1, 2, 3)``.
        frozen_stages (int): -1 freezes nothing, 0 the stem, k the stem and
            stages 0..k-1 with their output norms. Defaults to -1.
        norm_eval (bool): Put BatchNorm layers in eval mode in ``train()``.
            PoolFormer has none (it uses GroupNorm), so this only affects
            BatchNorms a user adds. Defaults to False.
        with_cp (bool): Checkpoint every block to save memory. Defaults to
            False.
        drop_path_rate (float): Stochastic depth, increasing linearly over
            the blocks up to this rate. Defaults to 0.
        layer_scale_init_value (float, optional): Overrides the arch's
            initial layer scale (1e-5 for S12/S24, 1e-6 otherwise).
            Defaults to None (the arch's value).
        mlp_ratio (float): MLP hidden width over the block width.
            Defaults to 4.
        pool_size (int): Pooling window of the token mixer. Defaults to 3.
        fused_token_mixer (bool): Compute the token mixer without
            materialising the normalised tensor (see
            :class:`PoolFormerBlock`; equal within float rounding; measured
            no faster than GroupNorm's native kernel on a 2-core CPU).
            Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained',
            checkpoint=...)`` to load ImageNet weights. Defaults to None.

    Example:
        >>> import torch
        >>> from mixer_backbones import PoolFormer
        >>> model = PoolFormer('s12').eval()
        >>> for level in model(torch.rand(1, 3, 800, 1216)):
        ...     print(tuple(level.shape))
        (1, 64, 200, 304)
        (1, 128, 100, 152)
        (1, 320, 50, 76)
        (1, 512, 25, 38)
    """
    arch_zoo = {
        's12': dict(depths=[2, 2, 6, 2], widths=[64, 128, 320, 512],
                    layer_scale_init_value=1e-5),
        's24': dict(depths=[4, 4, 12, 4], widths=[64, 128, 320, 512],
                    layer_scale_init_value=1e-5),
        's36': dict(depths=[6, 6, 18, 6], widths=[64, 128, 320, 512],
                    layer_scale_init_value=1e-6),
        'm36': dict(depths=[6, 6, 18, 6], widths=[96, 192, 384, 768],
                    layer_scale_init_value=1e-6),
        'm48': dict(depths=[8, 8, 24, 8], widths=[96, 192, 384, 768],
                    layer_scale_init_value=1e-6),
    }  # yapf: disable
    arch_keys = ('depths', 'widths')
    arch_optional_keys = ('layer_scale_init_value', )
    # The 7x7 stride-4 stem with padding 2 needs at least 3 pixels.
    min_input_size = 3

    def __init__(self,
                 arch: Union[str, dict] = 's12',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: Optional[float] = None,
                 mlp_ratio: float = 4.,
                 pool_size: int = 3,
                 fused_token_mixer: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_arguments(
            type(self).__name__,
            in_channels=in_channels,
            out_indices=out_indices,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            drop_path_rate=drop_path_rate,
            layer_scale_init_value=layer_scale_init_value,
            mlp_ratio=mlp_ratio,
            pool_size=pool_size,
            fused_token_mixer=fused_token_mixer)
        settings = self.init_arch(arch)
        depths, widths = settings['depths'], settings['widths']
        if len(depths) != len(widths):
            raise ValueError(f'PoolFormer arch: depths {depths} and widths '
                             f'{widths} differ in length')
        if layer_scale_init_value is None:
            layer_scale_init_value = settings.get('layer_scale_init_value',
                                                  1e-5)
        self.stem = nn.Conv2d(
            in_channels, widths[0], kernel_size=7, stride=4, padding=2)
        rates = torch.linspace(
            0, drop_path_rate, sum(depths), device='cpu').tolist()
        self.stages = nn.ModuleList()
        for i, (depth, width) in enumerate(zip(depths, widths)):
            downsample = None if i == 0 else nn.Conv2d(
                widths[i - 1], width, kernel_size=3, stride=2, padding=1)
            first = sum(depths[:i])
            blocks = [
                PoolFormerBlock(width, mlp_ratio, pool_size, rates[first + j],
                                layer_scale_init_value, fused_token_mixer)
                for j in range(depth)
            ]
            self.stages.append(PoolFormerStage(downsample, blocks))
        self.deployed = False
        self._setup_outputs(in_channels, out_indices, frozen_stages, norm_eval,
                            with_cp, widths)

    def forward_unit(self, index: int, x: torch.Tensor) -> torch.Tensor:
        stage = self.stages[index]
        x = stage.downsample(x)
        for block in stage.blocks:
            x = self.run_block(block, x)
        return x

    def switch_to_deploy(self) -> 'PoolFormer':
        """Turn every block into its inference form, in place: the fused
        token mixer, layer scales folded into the MLP, and on the CPU in
        fp32 oneDNN's fused 1x1 conv + GELU and 1x1 conv + residual add
        (fastest with ``channels_last`` inputs). Outputs stay equal within
        float rounding; the form is for inference (eval mode, no
        training). Returns the model."""
        for stage in self.stages:
            for block in stage.blocks:
                block.switch_to_deploy()
        self.deployed = True
        return self

    # ---------------------------------------------------------- weights --
    @classmethod
    def convert_checkpoint(cls,
                           state_dict: StateDict) -> Tuple[StateDict, str]:
        """Convert a PoolFormer state dict to this package's layout.

        Layouts, detected from the keys:

        - ``mixer_backbones``: returned unchanged.
        - ``timm``: ``stem.conv``, ``stages.{i}.downsample.conv``,
          ``stages.{i}.blocks.{j}.layer_scale{1,2}.scale``, ``head.*``.
        - ``sail-sg`` (the original release, also mmpretrain's names once
          its ``backbone.`` prefix is gone): ``patch_embed.proj``,
          ``network.{0,2,4,6}.{j}.*`` blocks, ``network.{1,3,5}.proj``
          downsamples, ``layer_scale_{1,2}``; the classifier's final norm
          is ``norm`` (``norm6`` in mmpretrain), while the original
          detection/segmentation checkpoints carry per-level output norms
          ``norm{0,2,4,6}``, loaded as ``out_norms.{0,1,2,3}``.
        """
        if 'stem.weight' in state_dict:
            return dict(state_dict), 'mixer_backbones'
        if 'stem.conv.weight' in state_dict:
            return _convert_timm(state_dict), 'timm'
        if 'patch_embed.proj.weight' in state_dict:
            return _convert_sail(state_dict), 'sail-sg/mmpretrain'
        raise CheckpointError(
            'not a PoolFormer checkpoint in a known layout (mixer_backbones: '
            "'stem.weight'; timm: 'stem.conv.weight'; sail-sg or "
            "mmpretrain: 'patch_embed.proj.weight'); first keys: "
            f'{list(state_dict)[:5]}')


def _layer_scale(value: torch.Tensor) -> torch.Tensor:
    return value.reshape(-1)


def _convert_timm(state_dict: StateDict) -> StateDict:
    converted = {}
    for key, value in state_dict.items():
        new = key.replace('stem.conv.', 'stem.')
        new = new.replace('.downsample.conv.', '.downsample.')
        if re.search(r'\.layer_scale[12]\.scale$', new):
            new = new.replace('.scale', '.weight')
            value = _layer_scale(value)
        if new.startswith('head.norm.'):
            new = new[len('head.'):]
        converted[new] = value
    return converted


def _convert_sail(state_dict: StateDict) -> StateDict:
    dense_norms = 'norm0.weight' in state_dict
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        new = key
        match = re.match(r'network\.(\d+)\.(.*)', key)
        norm = re.match(r'norm(\d+)\.(.*)', key)
        if key.startswith('patch_embed.proj.'):
            new = 'stem.' + key[len('patch_embed.proj.'):]
        elif match:
            position, rest = int(match.group(1)), match.group(2)
            if position % 2:  # downsample between stages
                new = f'stages.{position // 2 + 1}.downsample.' + rest[
                    len('proj.'):]
            else:
                new = f'stages.{position // 2}.blocks.' + rest
                if re.search(r'\.layer_scale_[12]$', new):
                    new = new.replace('layer_scale_',
                                      'layer_scale') + ('.weight')
                    value = _layer_scale(value)
        elif norm and dense_norms:
            new = f'out_norms.{int(norm.group(1)) // 2}.{norm.group(2)}'
        elif norm:  # mmpretrain's name of the classifier's final norm
            new = 'norm.' + norm.group(2)
        converted[new] = value
    return converted
