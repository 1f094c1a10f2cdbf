"""ODE samplers for flow-matching models, and classifier-free guidance.

A flow model gives a velocity field v(x, t); generation integrates dx/dt = v from pure noise at t = 1 down to
data at t = 0 (the convention of :mod:`soundtrail.models.diffusion`)::

    t:   1 = t_0 > t_1 > ... > t_S = 0          (time_grid: uniform, or shifted towards the noisy end)
    euler:  x <- x + (t_{i+1} - t_i) v(x, t_i)                                       1 evaluation per step
    heun:   x' = x + h v(x, t_i);  x <- x + h/2 (v(x, t_i) + v(x', t_{i+1}))          2 evaluations per step

Heun is second order: halving the step size quarters its error where Euler's only halves, which matters
because the learned paths are only nearly straight.

The integrators take any velocity function ``(x [B,...], t [B]) -> v``: tests check them on flows whose
exact solution is known; :func:`sample` plugs in a :class:`~soundtrail.models.diffusion.DiT` with
classifier-free guidance, v = v_uncond + s (v_cond - v_uncond), evaluated as one batch of 2B rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from soundtrail.models.diffusion import DiT, seeded_randn

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Method = Literal["euler", "heun"]


def time_grid(steps: int, shift: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """``steps + 1`` times from 1 to 0 (float64). ``shift`` > 1 packs the steps towards t = 1 (noise).

    The shift is SD3's t -> s t / (1 + (s - 1) t): the same map that turns a signal-to-noise ratio into one
    ``s`` times noisier, used for long sequences whose coarse structure forms early in the noisy half.
    """
    if steps < 1:
        raise ValueError("steps must be at least 1")
    if shift <= 0:
        raise ValueError("shift must be positive")
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
    return shift * t / (1 + (shift - 1) * t)


def integrate(velocity: VelocityFn, x: torch.Tensor, times: torch.Tensor, method: Method = "euler") -> torch.Tensor:
    """Integrate dx/dt = velocity(x, t) from ``x`` at ``times[0]`` through each of ``times`` in turn."""
    if method not in ("euler", "heun"):
        raise ValueError(f"unknown method {method!r}; use 'euler' or 'heun'")
    batch = x.shape[0]
    t_values = [float(t) for t in times]
    for t_now, t_next in zip(t_values[:-1], t_values[1:], strict=True):
        step = t_next - t_now
        v = velocity(x, x.new_full((batch,), t_now))
        if method == "euler":
            x = x + step * v
        else:
            v_next = velocity(x + step * v, x.new_full((batch,), t_next))
            x = x + (0.5 * step) * (v + v_next)
    return x


def guided_velocity(model: DiT, cond: torch.Tensor, cond_mask: torch.Tensor, cfg_scale: float) -> VelocityFn:
    """The DiT's velocity under classifier-free guidance with scale ``cfg_scale``.

    Written v_cond + (s - 1)(v_cond - v_uncond), which is the usual v_uncond + s (v_cond - v_uncond); at s = 1
    the unconditional half is skipped altogether, so guidance 1 is exactly the conditional model.
    """
    if cfg_scale == 1.0:
        return lambda x, t: model(x, t, cond, cond_mask)
    batch = cond.shape[0]
    null, null_mask = model.drop_condition(cond, cond_mask, torch.ones(batch, dtype=torch.bool, device=cond.device))
    both, both_mask = torch.cat([cond, null]), torch.cat([cond_mask, null_mask])

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_cond, v_uncond = model(torch.cat([x, x]), torch.cat([t, t]), both, both_mask).chunk(2)
        return v_cond + (cfg_scale - 1.0) * (v_cond - v_uncond)

    return velocity


@torch.no_grad()
def sample(model: DiT, shape: tuple[int, int, int], cond: torch.Tensor, cond_mask: torch.Tensor, steps: int = 32,
           method: Method = "euler", cfg_scale: float = 1.0, generator: torch.Generator | None = None,
           shift: float = 1.0) -> torch.Tensor:
    """Generate codec latents [B,D,F] for text embeddings ``cond`` [B,L,Dc] / ``cond_mask`` [B,L].

    The starting noise comes from ``generator`` (drawn on the generator's device, then moved), so a seed
    fixes the output; the ODE itself is deterministic. Runs under ``no_grad``; put the model in eval mode.
    """
    batch, dim, frames = shape
    if cond.shape[0] != batch or cond_mask.shape != cond.shape[:2]:
        raise ValueError(f"cond {tuple(cond.shape)} / cond_mask {tuple(cond_mask.shape)} do not match batch {batch}")
    device = model.latent_mean.device
    x = seeded_randn((batch, dim, frames), generator, device)
    velocity = guided_velocity(model, cond.to(device), cond_mask.to(device), cfg_scale)
    x = integrate(velocity, x, time_grid(steps, shift), method)
    return model.denormalize(x)
