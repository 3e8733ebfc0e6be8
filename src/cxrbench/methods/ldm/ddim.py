"""The heatmap's schedule (docs/methods.md, "The LDM heatmap"): DDIM over 1000 training steps, scaled-linear betas
0.0015..0.0205, v-prediction, and the deterministic inversion update (guidance 0) that walks a latent from t to t +
stride:

    x0 = sqrt(a_t) z - sqrt(1 - a_t) v,   eps = sqrt(a_t) v + sqrt(1 - a_t) z,
    z' = sqrt(a_next) x0 + sqrt(1 - a_next) eps,            a = cumulative product of (1 - beta).
"""

from __future__ import annotations

import numpy as np

TRAIN_STEPS = 1000
BETA_START, BETA_END = 0.0015, 0.0205
INFERENCE_STEPS = 300


def alphas_cumprod(train_steps: int = TRAIN_STEPS) -> np.ndarray:
    """Cumulative alpha products of the scaled-linear schedule (betas linear in sqrt space), float64."""
    betas = np.linspace(BETA_START**0.5, BETA_END**0.5, train_steps, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


def schedule_timesteps(steps: int, spacing: str = "trailing", train_steps: int = TRAIN_STEPS) -> np.ndarray:
    """The timesteps of a `steps`-step schedule over `train_steps`, ascending, stride s = train_steps // steps.

    "trailing" (the published zero-shot scheduler, its `set_timesteps(T, "trailing")`): t = train_steps - 1 - k s,
    k = 0, 1, ... while t >= 0, i.e. 0, 3, ..., 999 (334 steps) for T = 300 and 9, 19, ..., 999 for T = 100;
    "leading": t = k s, k = 0 .. steps - 1 (0, 10, ..., 990 for T = 100).
    """
    stride = train_steps // steps
    if spacing == "trailing":
        return (np.arange(train_steps, 0, -stride) - 1)[::-1].copy()
    return np.arange(steps) * stride


def inversion_timesteps(inference_steps: int = INFERENCE_STEPS) -> np.ndarray:
    """The heatmap's inversion timesteps: trailing spacing (334 steps t = 0, 3, ..., 999 for T = 300)."""
    return schedule_timesteps(inference_steps, "trailing")


def invert_step(z, v, a_t: float, a_next: float):
    """One DDIM inversion step for a v-prediction model (works on numpy arrays and torch tensors alike)."""
    x0 = a_t**0.5 * z - (1 - a_t) ** 0.5 * v
    eps = a_t**0.5 * v + (1 - a_t) ** 0.5 * z
    return a_next**0.5 * x0 + (1 - a_next) ** 0.5 * eps
