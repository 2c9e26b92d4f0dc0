"""Diff-BGM's sampling, as its inference code runs it (`SDFSampler.paint`): ancestral DDPM
from step n-2 down to 0 (its loop never evaluates the last step), classifier-free guidance
against a condition of -1s, and the switch from the early condition (captions, for its
released `c_v` model) to the late one (visual features) at step 200. A shorter schedule is
DDIM over evenly spaced steps (its repository's `DDIMSampler`, uniform, eta 0), with the same
switch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch

from services.generator.backends.symbolic_diffusion.checkpoint import (
    PITCHES,
    STEPS_PER_WINDOW,
    LoadedDiffBgm,
)

# Steps above this use the early condition, the others the late one.
SWITCH_STEP = 200
# Called after each denoising step with (step, steps); may raise to cancel.
StepCallback = Callable[[int, int], None]


def schedule(n_steps: int, steps: int) -> list[int]:
    """The model steps a sampling of `steps` evaluations visits, noisiest first."""
    if steps >= n_steps - 1:
        return list(range(n_steps - 2, -1, -1))
    stride = n_steps // steps
    return list(np.arange(0, n_steps, stride)[:steps][::-1] + 1)


def sample(
    loaded: LoadedDiffBgm,
    conditions: dict[str, torch.Tensor],
    seeds: Sequence[int],
    steps: int,
    guidance: float,
    on_step: StepCallback,
) -> np.ndarray:
    """Piano rolls (windows, 2, 128, 128) for a batch of windows; each window's noise comes
    from its own seed alone, whatever else is in the batch. `conditions` maps "caption" and
    "visual" to (windows, 32, d_cond) tokens."""
    model = loaded.model
    ldm = model.ldm
    alpha_bar_saved = cast(torch.Tensor, ldm.alpha_bar)
    n_steps = int(alpha_bar_saved.shape[0])
    device, dtype = alpha_bar_saved.device, next(model.parameters()).dtype
    shape = (2, STEPS_PER_WINDOW, PITCHES)
    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]

    def noise() -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)

    early, late = conditions[loaded.early], conditions[loaded.late]
    uncond = -torch.ones_like(early)
    visits = schedule(n_steps, steps)
    full = len(visits) == n_steps - 1
    alpha_bar = alpha_bar_saved.double()
    beta = cast(torch.Tensor, ldm.beta).double()

    def eps(x: torch.Tensor, step: int) -> torch.Tensor:
        cond = early if step > SWITCH_STEP else late
        t = torch.full((x.shape[0],), step, device=device, dtype=torch.long)
        if guidance == 1.0:
            return model.ldm.eps_model(x, t, cond)
        e_u, e_c = model.ldm.eps_model(torch.cat([x, x]), torch.cat([t, t]),
                                       torch.cat([uncond, cond])).chunk(2)  # fmt: skip
        return e_u + guidance * (e_c - e_u)

    with torch.inference_mode():
        if full:
            # As its paint(): x = q_sample(0, n-1, noise), then the posterior step by step.
            x = (1 - alpha_bar[n_steps - 1]).sqrt().to(dtype) * noise()
            ab_prev = torch.cat([alpha_bar.new_ones(1), alpha_bar[:-1]])
            variance = beta * (1 - ab_prev) / (1 - alpha_bar)
            log_var = torch.log(variance.clamp(min=1e-20))
            mean_x0 = beta * ab_prev.sqrt() / (1 - alpha_bar)
            mean_xt = (1 - ab_prev) * (1 - beta).sqrt() / (1 - alpha_bar)
            for index, step in enumerate(visits):
                e_t = eps(x, step).double()
                x0 = x.double() / alpha_bar[step].sqrt() - (1 / alpha_bar[step] - 1).sqrt() * e_t
                mean = mean_x0[step] * x0 + mean_xt[step] * x.double()
                if step > 0:
                    mean = mean + (0.5 * log_var[step]).exp() * noise().double()
                x = mean.to(dtype)
                on_step(index + 1, len(visits))
        else:
            x = noise()
            for index, step in enumerate(visits):
                e_t = eps(x, step).double()
                ab = alpha_bar[step]
                ab_prev = alpha_bar[visits[index + 1]] if index + 1 < len(visits) else alpha_bar[0]
                x0 = (x.double() - (1 - ab).sqrt() * e_t) / ab.sqrt()
                x = (ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * e_t).to(dtype)
                on_step(index + 1, len(visits))
    return x.float().cpu().numpy()
