"""Diff-BGM's denoiser, written here from its description (sizhelee/Diff-BGM,
`diffbgm/stable_diffusion/model/unet.py` and `unet_attention.py`): a Stable-Diffusion-style
U-Net on the piano roll itself (no autoencoder), whose attention is segment-aware. Module and
parameter names are the ones its checkpoints use, so its released weights load strictly.

Input: (batch, 2, 128, 128) = onset and sustain channels x 128 sixteenth-note steps (8 bars of
4/4) x 128 MIDI pitches, values 0/1. Conditions: (batch, 32, d_cond), one token per beat.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

# Groups of every normalisation but the transformers' (whose epsilon differs).
GROUPS = 32
# The longest period of the sinusoidal time-step embedding.
MAX_PERIOD = 10000


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (half precision loses it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(GROUPS, channels)


class ResBlock(nn.Module):
    def __init__(self, channels: int, d_t_emb: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(_norm(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))  # fmt: skip
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(d_t_emb, out_channels))
        self.out_layers = nn.Sequential(
            _norm(out_channels), nn.SiLU(), nn.Dropout(0.0),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )  # fmt: skip
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(t_emb).type(h.dtype)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


def segment_mask(queries: int, keys: int, segments: int, device: torch.device) -> torch.Tensor:
    """Diff-BGM's segment-aware attention: the window's queries (time-major tokens) in
    `segments` equal stretches, each attending only to the same stretch of the keys (its
    own frames, or its own beats' condition tokens)."""
    mask = torch.zeros(queries, keys, dtype=torch.bool, device=device)
    for i in range(segments):
        mask[queries * i // segments : queries * (i + 1) // segments,
             keys * i // segments : keys * (i + 1) // segments] = True  # fmt: skip
    return mask


class CrossAttention(nn.Module):
    def __init__(self, d_model: int, d_cond: int, n_heads: int, d_head: int, segments: int):
        super().__init__()
        self.n_heads, self.d_head, self.segments = n_heads, d_head, segments
        self.scale = d_head**-0.5
        d_attn = n_heads * d_head
        self.to_q = nn.Linear(d_model, d_attn, bias=False)
        self.to_k = nn.Linear(d_cond, d_attn, bias=False)
        self.to_v = nn.Linear(d_cond, d_attn, bias=False)
        self.to_out = nn.Sequential(nn.Linear(d_attn, d_model))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        context = x if cond is None else cond
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        b, lq, lk = q.shape[0], q.shape[1], k.shape[1]
        q = q.view(b, lq, self.n_heads, self.d_head).transpose(1, 2)
        k = k.view(b, lk, self.n_heads, self.d_head).transpose(1, 2)
        v = v.view(b, lk, self.n_heads, self.d_head).transpose(1, 2)
        mask = segment_mask(lq, lk, self.segments, x.device)
        # Equal to its einsum, softmax over masked scores and weighted sum.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        return self.to_out(out.transpose(1, 2).reshape(b, lq, self.n_heads * self.d_head))


class GeGLU(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.proj = nn.Linear(d_in, d_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(GeGLU(d_model, d_model * d_mult), nn.Dropout(0.0),
                                 nn.Linear(d_model * d_mult, d_model))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_head: int, d_cond: int, segments: int):
        super().__init__()
        self.attn1 = CrossAttention(d_model, d_model, n_heads, d_head, segments)
        self.norm1 = nn.LayerNorm(d_model)
        self.attn2 = CrossAttention(d_model, d_cond, n_heads, d_head, segments)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), cond=cond) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, channels: int, n_heads: int, n_layers: int, d_cond: int, segments: int):
        super().__init__()
        # Its own epsilon: 1e-6 here, 1e-5 in every other normalisation.
        self.norm = nn.GroupNorm(GROUPS, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(channels, n_heads, channels // n_heads, d_cond, segments)
            for _ in range(n_layers)
        )
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        x_in = x
        x = self.proj_in(self.norm(x))
        # Tokens are time-major: token = step * pitches + pitch.
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        for block in self.transformer_blocks:
            x = block(x, cond)
        x = x.view(b, h, w, c).permute(0, 3, 1, 2)
        return self.proj_out(x) + x_in


class DownSample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class UpSample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x: torch.Tensor, t_emb: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, t_emb)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, cond)
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        channels: int,
        n_res_blocks: int,
        attention_levels: list[int],
        channel_multipliers: list[int],
        n_heads: int,
        tf_layers: int,
        d_cond: int,
        segments: int,
    ):
        super().__init__()
        self.channels = channels
        levels = len(channel_multipliers)
        d_time_emb = channels * 4
        self.time_embed = nn.Sequential(nn.Linear(channels, d_time_emb), nn.SiLU(),
                                        nn.Linear(d_time_emb, d_time_emb))  # fmt: skip

        def transformer(width: int) -> SpatialTransformer:
            return SpatialTransformer(width, n_heads, tf_layers, d_cond, segments)

        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(in_channels, channels, 3, padding=1))]
        )
        skips = [channels]
        widths = [channels * m for m in channel_multipliers]
        for level in range(levels):
            for _ in range(n_res_blocks):
                layers: list[nn.Module] = [ResBlock(channels, d_time_emb, widths[level])]
                channels = widths[level]
                if level in attention_levels:
                    layers.append(transformer(channels))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skips.append(channels)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(DownSample(channels)))
                skips.append(channels)
        self.middle_block = TimestepEmbedSequential(
            ResBlock(channels, d_time_emb), transformer(channels), ResBlock(channels, d_time_emb)
        )
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            for index in range(n_res_blocks + 1):
                layers = [ResBlock(channels + skips.pop(), d_time_emb, widths[level])]
                channels = widths[level]
                if level in attention_levels:
                    layers.append(transformer(channels))
                if level != 0 and index == n_res_blocks:
                    layers.append(UpSample(channels))
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(_norm(channels), nn.SiLU(),
                                 nn.Conv2d(channels, out_channels, 3, padding=1))  # fmt: skip

    def time_step_embedding(
        self, time_steps: torch.Tensor, max_period: int = 10000
    ) -> torch.Tensor:
        half = self.channels // 2
        frequencies = torch.exp(
            -math.log(max_period)
            * torch.arange(half, dtype=torch.float32, device=time_steps.device)
            / half
        )
        args = time_steps[:, None].float() * frequencies[None]
        # Cosines first, as its checkpoints were trained.
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(
        self, x: torch.Tensor, time_steps: torch.Tensor, cond: torch.Tensor
    ) -> torch.Tensor:
        t_emb = self.time_embed(self.time_step_embedding(time_steps).to(x.dtype))
        skips = []
        for block in self.input_blocks:
            x = block(x, t_emb, cond)
            skips.append(x)
        x = self.middle_block(x, t_emb, cond)
        for block in self.output_blocks:
            x = block(torch.cat([x, skips.pop()], dim=1), t_emb, cond)
        return self.out(x)


def unet_from_params(params: dict[str, Any], segments: int) -> UNetModel:
    return UNetModel(
        in_channels=params["in_channels"], out_channels=params["out_channels"],
        channels=params["channels"], n_res_blocks=params["n_res_blocks"],
        attention_levels=list(params["attention_levels"]),
        channel_multipliers=list(params["channel_multipliers"]), n_heads=params["n_heads"],
        tf_layers=params["tf_layers"], d_cond=params["d_cond"], segments=segments,
    )  # fmt: skip
