"""The MetaFormer block and stage, shared by every MetaFormer family.

A MetaFormer block is two residual branches, each ``norm -> mixer ->
layer scale -> drop path``: a token mixer (pooling in PoolFormer and
EfficientFormer's Meta4D blocks, separable convolutions or attention in
the later baselines) and a channel MLP; the later baselines also scale the
residual stream itself (``res_scale``). A family is an arch table and the
modules it passes in; the block itself never changes.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn

from .base import BaseDenseBackbone
from .layers import DropPath, LayerScale, add_residual


def layer_scale(channels: int,
                init_value: Optional[float],
                channel_dim: int = 1) -> nn.Module:
    """A :class:`LayerScale`, or ``nn.Identity()`` for ``None``."""
    if init_value is None:
        return nn.Identity()
    return LayerScale(channels, init_value, channel_dim)


class MetaFormerBlock(nn.Module):
    """``x = rs1 * x + drop_path(ls1 * token_mixer(norm1(x)))``, then
    ``x = rs2 * x + drop_path(ls2 * mlp(norm2(x)))``.

    The block works in the layout its modules work in: NCHW maps in
    PoolFormer, EfficientFormer, IdentityFormer and PoolFormerV2
    (``channel_dim=1``), channels-last (N, H, W, C) maps in ConvFormer and
    CAFormer (``channel_dim=-1``).

    Args:
        channels (int): Channels of the block.
        token_mixer (nn.Module): Mixes tokens, NCHW to NCHW.
        mlp (nn.Module): Mixes channels, NCHW to NCHW.
        norm1 (nn.Module, optional): Norm before the token mixer.
            Defaults to None (none).
        norm2 (nn.Module, optional): Norm before the MLP. Defaults to None.
        layer_scale_init_value (float, optional): Initial layer scale of
            both branches; None for none. Defaults to None.
        drop_path (float): Stochastic depth of both branches.
            Defaults to 0.
        res_scale_init_value (float, optional): Initial per-channel scale
            of the residual stream before each branch is added (``rs1``,
            ``rs2``); None for none. Defaults to None.
        channel_dim (int): Channel dimension of the maps: 1 (NCHW) or -1
            (channels last). Defaults to 1.
    """

    def __init__(self,
                 channels: int,
                 token_mixer: nn.Module,
                 mlp: nn.Module,
                 norm1: Optional[nn.Module] = None,
                 norm2: Optional[nn.Module] = None,
                 layer_scale_init_value: Optional[float] = None,
                 drop_path: float = 0.,
                 res_scale_init_value: Optional[float] = None,
                 channel_dim: int = 1) -> None:
        super().__init__()
        self.norm1 = norm1 if norm1 is not None else nn.Identity()
        self.token_mixer = token_mixer
        self.layer_scale1 = layer_scale(channels, layer_scale_init_value,
                                        channel_dim)
        self.res_scale1 = layer_scale(channels, res_scale_init_value,
                                      channel_dim)
        self.norm2 = norm2 if norm2 is not None else nn.Identity()
        self.mlp = mlp
        self.layer_scale2 = layer_scale(channels, layer_scale_init_value,
                                        channel_dim)
        self.res_scale2 = layer_scale(channels, res_scale_init_value,
                                      channel_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else (
            nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = add_residual(
            self.res_scale1(x),
            self.drop_path(self.layer_scale1(self.token_mixer(
                self.norm1(x)))))
        return add_residual(
            self.res_scale2(x),
            self.drop_path(self.layer_scale2(self.mlp(self.norm2(x)))))

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Inference form, by re-parameterisation only (eval mode):

        - the MLP's BatchNorms fold into its convs, and the second layer
          scale into ``mlp.fc2``;
        - the first layer scale folds into ``norm1``'s affine when the
          token mixer is linear per channel (pooling): then
          ``ls * mixer(norm(x)) = mixer(ls * norm(x))``;
        - drop path (inactive in eval mode) goes.

        What cannot fold stays as it is; calling it twice changes nothing.
        """
        if hasattr(self.mlp, 'fold_batchnorms'):
            self.mlp.fold_batchnorms()
        if isinstance(self.layer_scale2, LayerScale) and hasattr(
                self.mlp, 'fold_output_scale'):
            self.mlp.fold_output_scale(self.layer_scale2.weight)
            self.layer_scale2 = nn.Identity()
        norm = self.norm1
        if (isinstance(self.layer_scale1, LayerScale)
                and getattr(self.token_mixer, 'per_channel_linear', False)
                and isinstance(norm, nn.GroupNorm) and norm.affine):
            scale = self.layer_scale1.weight
            norm.weight.mul_(scale)
            norm.bias.mul_(scale)
            self.layer_scale1 = nn.Identity()
        self.drop_path = nn.Identity()


class MetaFormerStage(nn.Module):
    """An optional downsampling layer followed by blocks.

    Args:
        downsample (nn.Module, optional): Applied first; None for none.
        blocks (Sequence[nn.Module]): The stage's blocks, in order.
    """

    def __init__(self, downsample: Optional[nn.Module],
                 blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.downsample = downsample if downsample is not None else (
            nn.Identity())
        self.blocks = nn.Sequential(*blocks)


def drop_path_rates(depths: Sequence[int], rate: float) -> list:
    """Per-stage lists of stochastic-depth rates, increasing linearly from
    0 over all blocks up to ``rate``."""
    rates = torch.linspace(0, rate, sum(depths), device='cpu').tolist()
    out, first = [], 0
    for depth in depths:
        out.append(rates[first:first + depth])
        first += depth
    return out


class MetaFormerBackbone(BaseDenseBackbone):
    """A hierarchical backbone of :class:`MetaFormerStage` units: the
    stage forward (block by block, checkpointed with ``with_cp``) and the
    inference form, shared by the MetaFormer families."""

    def forward_unit(self, index: int, x: torch.Tensor) -> torch.Tensor:
        stage = self.stages[index]
        x = stage.downsample(x)
        for block in stage.blocks:
            x = self.run_block(block, x)
        return x

    @torch.no_grad()
    def switch_to_deploy(self) -> 'MetaFormerBackbone':
        """Turn the backbone into its inference form, in place, by
        re-parameterisation only (see
        :meth:`MetaFormerBlock.switch_to_deploy`; families fold their own
        stems and downsamples first): plain PyTorch modules, outputs equal
        within float rounding, for eval mode. On the CPU,
        :func:`mixer_backbones.ops.cpu.optimize` then runs it with fused
        oneDNN kernels. Returns the model."""
        if not self.deployed:
            for module in self.modules():
                if isinstance(module, MetaFormerBlock):
                    module.switch_to_deploy()
            self.deployed = True
        return self
