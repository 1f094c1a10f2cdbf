"""ODE samplers on flows with a closed-form solution, and the time grid.

The flow: rectified flow between x0 ~ N(mu0, s0^2) (data, t = 0) and x1 ~ N(mu1, s1^2) (noise, t = 1) with
independent coupling. Its marginals stay Gaussian, N(m_t, sd_t^2) with m_t = (1 - t) mu0 + t mu1 and
sd_t^2 = (1 - t)^2 s0^2 + t^2 s1^2, and the marginal velocity field is the affine map
v(x, t) = m_t' + (sd_t' / sd_t)(x - m_t). Its exact flow carries every point along x_t = m_t + sd_t z with z
fixed, so integrating from t = 1 to t = 0 must map x1 to mu0 + s0 (x1 - mu1) / s1, point by point.
"""

from __future__ import annotations

import math

import pytest
import torch

from soundtrail.models.sampling import integrate, time_grid

MU0, S0 = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.3, 1.5, 0.8])
MU1, S1 = torch.zeros(3), torch.ones(3)


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.double()[:, None]
    mean = (1 - t) * MU0 + t * MU1
    sd = torch.sqrt((1 - t) ** 2 * S0**2 + t**2 * S1**2)
    d_sd = (-(1 - t) * S0**2 + t * S1**2) / sd
    return (MU1 - MU0) + d_sd / sd * (x - mean)


def endpoint_error(steps: int, method: str, shift: float = 1.0) -> float:
    x1 = MU1 + S1 * torch.randn(256, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = MU0 + S0 * (x1 - MU1) / S1
    result = integrate(gaussian_velocity, x1, time_grid(steps, shift), method)
    return (result - exact).abs().max().item()


def test_euler_and_heun_reach_the_exact_endpoint():
    """Worst point of 256, on data spread up to s0 = 1.5: Euler at 64 steps within 0.15, Heun at 16 within 0.01."""
    assert endpoint_error(64, "euler") < 0.15
    assert endpoint_error(16, "heun") < 1e-2
    assert endpoint_error(64, "heun") < 1e-3


def test_heun_beats_euler_at_equal_steps():
    for steps in (4, 8, 16):
        assert endpoint_error(steps, "heun") < endpoint_error(steps, "euler") / 4


def test_convergence_orders():
    """Doubling the steps halves Euler's error (first order) and quarters Heun's (second order)."""
    euler_ratio = endpoint_error(16, "euler") / endpoint_error(32, "euler")
    heun_ratio = endpoint_error(16, "heun") / endpoint_error(32, "heun")
    assert 1.7 < euler_ratio < 2.3
    assert 3.4 < heun_ratio < 4.6


def test_linear_ode_matches_exponential():
    """dx/dt = a x, integrated from t = 1 to 0, is x1 exp(-a)."""
    x1 = torch.linspace(-2.0, 2.0, 5, dtype=torch.float64)[:, None]
    result = integrate(lambda x, t: 0.7 * x, x1, time_grid(40), "heun")
    torch.testing.assert_close(result, x1 * math.exp(-0.7), rtol=1e-4, atol=1e-6)


def test_time_grid_endpoints_and_shift():
    plain = time_grid(10)
    assert plain.shape == (11,) and plain[0] == 1.0 and plain[-1] == 0.0
    assert torch.all(plain[1:] < plain[:-1])
    torch.testing.assert_close(plain[1:] - plain[:-1], torch.full((10,), -0.1, dtype=torch.float64))
    shifted = time_grid(10, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0 and torch.all(shifted[1:] < shifted[:-1])
    assert torch.all(shifted[1:-1] > plain[1:-1])  # more of the steps are spent near the noisy end
    assert endpoint_error(16, "heun", shift=3.0) < 5e-2


def test_bad_arguments():
    with pytest.raises(ValueError):
        time_grid(0)
    with pytest.raises(ValueError):
        time_grid(4, shift=0.0)
    with pytest.raises(ValueError):
        integrate(gaussian_velocity, torch.zeros(1, 3), time_grid(2), "rk4")  # type: ignore[arg-type]
