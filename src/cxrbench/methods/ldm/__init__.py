"""The MONAI chest X-ray latent diffusion model read through its cross-attention (docs/methods.md, docs/ldm.md)."""
