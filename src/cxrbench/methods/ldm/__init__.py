"""The MONAI chest X-ray latent diffusion model read through its cross-attention (SPEC 5, 5.2)."""
