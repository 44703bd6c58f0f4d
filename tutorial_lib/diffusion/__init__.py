"""The generic diffusion machinery: DDPM/DDIM, Langevin dynamics, score matching, guidance, metrics, 2D toy data and models."""
