"""Two-dimensional data sets whose density (and so whose score) we know or can sample exactly."""

from __future__ import annotations

import math

import torch

__all__ = ["GaussianMixture", "song_ermon_mixture", "six_mode_mixture", "grid_mixture", "swiss_roll", "DATASETS",
           "MIXTURES", "sample_dataset"]


class GaussianMixture:
    """A mixture ``p(x) = sum_k w_k N(x; mu_k, Sigma_k)`` with exact log-density and score.

    The score is the responsibility-weighted pull towards each component's mean::

        grad_x log p(x) = sum_k r_k(x) * (-Sigma_k^{-1} (x - mu_k)),
        r_k(x) = w_k N(x; mu_k, Sigma_k) / p(x).

    Adding Gaussian noise of scale sigma to a sample gives again a mixture, with covariances
    ``Sigma_k + sigma^2 I`` (:meth:`noised`): this is why annealed Langevin dynamics can be run on
    the exact noised scores in Chapter 1.

    Args:
        means: ``(K, D)`` component means.
        covs: ``(K, D, D)`` covariances, or ``(K,)`` standard deviations of isotropic components.
        weights: ``(K,)`` non-negative weights (normalised to sum to 1).
    """

    def __init__(self, means, covs, weights):
        means = torch.as_tensor(means, dtype=torch.float32)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, D), got {tuple(means.shape)}")
        k, d = means.shape
        covs = torch.as_tensor(covs, dtype=torch.float32)
        if covs.shape == (k,):
            covs = covs[:, None, None] ** 2 * torch.eye(d)
        if covs.shape != (k, d, d):
            raise ValueError(f"covs must have shape ({k},) or ({k}, {d}, {d}), got {tuple(covs.shape)}")
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be {k} non-negative numbers with a positive sum, got {weights}")
        self.means, self.covs, self.weights = means, covs, weights / weights.sum()
        self._chol = torch.linalg.cholesky(covs)
        self._prec = torch.cholesky_inverse(self._chol)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def noised(self, sigma: float) -> "GaussianMixture":
        """The law of ``x + sigma * eps``, ``eps ~ N(0, I)``: covariances grow by ``sigma^2 I``."""
        return GaussianMixture(self.means, self.covs + sigma ** 2 * torch.eye(self.dim), self.weights)

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x; mu_k, Sigma_k)``. Shapes: x ``(N, D)`` -> ``(N, K)``."""
        diff = x[:, None, :] - self.means[None]                       # (N, K, D)
        maha = torch.einsum("nkd,kde,nke->nk", diff, self._prec, diff)
        logdet = 2 * torch.log(torch.diagonal(self._chol, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        return torch.log(self.weights) - 0.5 * (maha + logdet + self.dim * math.log(2 * math.pi))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)``. Shapes: x ``(N, D)`` -> ``(N,)``."""
        return torch.logsumexp(self.component_log_probs(x), dim=1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior component probabilities ``r_k(x)``. Shapes: ``(N, D)`` -> ``(N, K)``."""
        return torch.softmax(self.component_log_probs(x), dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``grad_x log p(x)`` in closed form. Shapes: x ``(N, D)`` -> ``(N, D)``."""
        r = self.responsibilities(x)                                  # (N, K)
        pull = -torch.einsum("kde,nke->nkd", self._prec, x[:, None, :] - self.means[None])
        return (r[..., None] * pull).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None, return_labels: bool = False):
        """Draw ``n`` samples: ``(n, D)``, and with ``return_labels`` also their components ``(n,)`` long."""
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator)
        x = self.means[comp] + torch.einsum("nde,ne->nd", self._chol[comp], eps)
        return (x, comp) if return_labels else x

    def mode_shares(self, x: torch.Tensor) -> torch.Tensor:
        """Share of the points ``x`` whose most likely component is k. Returns ``(K,)``."""
        comp = self.component_log_probs(x).argmax(dim=1)
        return torch.bincount(comp, minlength=len(self.weights)).float() / len(x)

    def mode_weight_error(self, x: torch.Tensor) -> float:
        """Total variation ``0.5 sum_k |w_k - share_k|`` between the weights and the shares of ``x``."""
        return 0.5 * (self.weights - self.mode_shares(x)).abs().sum().item()

    def mode_coverage(self, x: torch.Tensor, min_share: float = 0.25, max_distance: float = 3.0) -> tuple[float, float]:
        """How many modes the points ``x: (N, D)`` reach, and how many points land on none.

        A point *lands on* component k when its Mahalanobis distance ``sqrt((x - mu_k)^T Sigma_k^{-1} (x - mu_k))``
        to k is at most ``max_distance`` (the nearest such k). Component k is *covered* when at least
        ``min_share * w_k * N`` points land on it (a quarter of its expected count by default). Returns
        ``(covered share of the K components, share of the points that land on no component)``.
        """
        diff = x[:, None, :] - self.means[None]
        maha = torch.einsum("nkd,kde,nke->nk", diff, self._prec, diff).clamp_min(0).sqrt()     # (N, K)
        nearest = maha.argmin(dim=1)
        on = maha.gather(1, nearest[:, None])[:, 0] <= max_distance
        counts = torch.bincount(nearest[on], minlength=len(self.weights)).float()
        covered = counts >= min_share * self.weights * len(x)
        return covered.float().mean().item(), 1.0 - on.float().mean().item()


def song_ermon_mixture() -> GaussianMixture:
    """``1/5 N((-5,-5), I) + 4/5 N((5,5), I)``: the example of Song & Ermon (2019), Sec. 3.2."""
    return GaussianMixture(means=[[-5.0, -5.0], [5.0, 5.0]], covs=[1.0, 1.0], weights=[0.2, 0.8])


def six_mode_mixture(scale: float = 1.0) -> GaussianMixture:
    """Six anisotropic Gaussians of unequal weights on a ring of radius ``3 * scale``.

    Weights 0.3, 0.1, 0.2, 0.1, 0.2, 0.1 counter-clockwise from the positive x axis; each
    component is elongated along the ring (standard deviations 0.28 and 0.59 times ``scale``).
    """
    angles = torch.arange(6) * (2 * math.pi / 6)
    means = 3.0 * scale * torch.stack([angles.cos(), angles.sin()], dim=1)
    covs = []
    for a in angles:  # elongated along the ring's tangent
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        covs.append(scale ** 2 * (rot @ torch.diag(torch.tensor([0.08, 0.35])) @ rot.T))
    return GaussianMixture(means, torch.stack(covs), weights=[0.3, 0.1, 0.2, 0.1, 0.2, 0.1])


def grid_mixture(n_side: int = 5, spacing: float = 1.0, std: float = 0.1) -> GaussianMixture:
    """``n_side^2`` equal isotropic Gaussians of standard deviation ``std`` on a square grid of pitch ``spacing``,
    centred on the origin: the 25-mode grid on which GANs are known to drop modes (e.g. Srivastava et al. 2017)."""
    if n_side < 1 or spacing <= 0 or std <= 0:
        raise ValueError(f"need n_side >= 1, spacing > 0 and std > 0, got {n_side}, {spacing}, {std}")
    c = (torch.arange(n_side, dtype=torch.float32) - (n_side - 1) / 2) * spacing
    means = torch.stack(torch.meshgrid(c, c, indexing="xy"), dim=-1).reshape(-1, 2)
    return GaussianMixture(means, torch.full((n_side * n_side,), std), torch.ones(n_side * n_side))


def swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.03) -> torch.Tensor:
    """Points on a 2D spiral, ``x = t (cos t, sin t) / 10`` with ``t ~ U(1.5 pi, 4.5 pi)``.

    The data set of Sohl-Dickstein et al. (2015), scaled to about [-1.4, 1.4]^2, with
    Gaussian jitter of standard deviation ``noise``. Returns ``(n, 2)``.
    """
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 10.0
    return x + noise * torch.randn(n, 2, generator=generator)


# The 2D data sets of Chapter 1's DDPM lesson, by name: (n, generator, noise) -> (n, 2) points.
# "six_modes" is the six-mode mixture at half size (ring of radius 1.5); "grid25" the 5 x 5 grid of
# ``grid_mixture`` (modes at -2 .. 2, standard deviation 0.1); "noise" applies to the swiss roll only.
DATASETS = {
    "six_modes": lambda n, generator, noise: six_mode_mixture(scale=0.5).sample(n, generator),
    "swiss_roll": lambda n, generator, noise: swiss_roll(n, generator, noise),
    "grid25": lambda n, generator, noise: grid_mixture().sample(n, generator),
}

# The mixtures behind the data sets that are mixtures (for mode shares and coverage).
MIXTURES = {"six_modes": lambda: six_mode_mixture(scale=0.5), "grid25": grid_mixture}


def sample_dataset(name: str, n: int, generator: torch.Generator | None = None, noise: float = 0.03) -> torch.Tensor:
    """Draw ``n`` points of the data set ``name`` (see ``DATASETS``). Returns ``(n, 2)``."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[name](n, generator, noise)
