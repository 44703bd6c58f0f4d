"""Two ablations of the Push-T diffusion policy, for Chapter 3's exercises: what the mirror images of the
demonstrations buy, and what the second observation buys.

The three policies differ in one setting each and share everything else (network, data, 30,000 steps):

- ``pusht-diffusion-policy``: the shipped policy (mirror images added, ``n_obs_steps = 2``);
- ``pusht-diffusion-policy-no-mirror``: the demonstrations alone;
- ``pusht-diffusion-policy-obs1``: one observation instead of two.

They are compared on reset seeds 100 .. 149 (``VARIANT_SEEDS``), which no setting of the book was chosen on
(the benchmark's are 0 .. 499, the demonstrations' >= 10**6, and 0 .. 49 were looked at while writing Chapter 3).

Where the mirror helps, the question is whether the data explains it: for each start, ``demos_near`` counts
the successful demonstration states whose block pose is near the start's block pose, for the start itself and
for its mirror image (the mirrored demonstrations near the start are exactly the demonstrations near the
start's mirror image).
"""

from __future__ import annotations

import numpy as np

from ..core.stats import mean_ci95

__all__ = ["VARIANTS", "VARIANT_SEEDS", "NEAR_PX", "NEAR_RAD", "demos_near", "start_states", "variants_entry",
           "gain_summary", "paired_difference"]

VARIANTS = ("pusht-diffusion-policy", "pusht-diffusion-policy-no-mirror", "pusht-diffusion-policy-obs1")
VARIANT_SEEDS = tuple(range(100, 150))
NEAR_PX, NEAR_RAD = 40.0, 0.35
"""A demonstration state is *near* a pose when its block is within 40 px and 0.35 rad (20 degrees) of it."""


def demos_near(poses: np.ndarray, states: np.ndarray, near_px: float = NEAR_PX, near_rad: float = NEAR_RAD) -> np.ndarray:
    """How many of ``states`` have their block near each pose.

    poses: (N, 5) and states: (M, 5) state observations ``[agent_x, agent_y, block_x, block_y, block_angle]``
    (only the block's pose is compared; angles are compared modulo 2 pi). Returns (N,) int counts.
    """
    poses, states = np.asarray(poses, dtype=np.float64), np.asarray(states, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 5 or states.ndim != 2 or states.shape[1] != 5:
        raise ValueError(f"poses and states must be (N, 5) state observations; got {poses.shape} and {states.shape}")
    d_xy = np.linalg.norm(states[None, :, 2:4] - poses[:, None, 2:4], axis=-1)
    d_angle = np.abs((states[None, :, 4] - poses[:, None, 4] + np.pi) % (2 * np.pi) - np.pi)
    return ((d_xy < near_px) & (d_angle < near_rad)).sum(axis=1)


def start_states(seeds) -> np.ndarray:
    """The state observation (N, 5) of ``PushTEnv``'s reset (the book's protocol) for each seed."""
    from ..envs.pusht import PushTEnv

    env = PushTEnv(obs_type="state")
    return np.stack([env.reset(seed=int(s))[0] for s in seeds]).astype(np.float64)


def _successful_demo_states() -> np.ndarray:
    """The state observations of the successful demonstrations (those the policies learned from)."""
    from ..core.assets import data_dir
    from ..envs.pusht_demos import load_demonstrations

    demos = load_demonstrations(str(data_dir() / "pusht/demos.npz"))
    ends = demos["episode_ends"]
    keep = np.repeat(demos["episode_success"].astype(bool), np.diff(np.r_[0, ends]))
    return demos["obs"][keep]


def variants_entry(seeds=VARIANT_SEEDS, device=None, paths: dict | None = None, sampler_seed: int = 0) -> dict:
    """Roll out the three policies from ``seeds`` and count the demonstrations near each start.

    ``paths`` maps a recipe name to a checkpoint file (default: the shipped ones). Returns, per recipe,
    ``mean_max_coverage``, ``success``, ``n_episodes``, ``ci95`` (t interval of the mean, Wilson interval of
    the success rate) and ``max_coverage`` (per episode, in the order of ``seeds``); and ``demos_near``:
    ``{"own": (N,), "mirror": (N,)}``, the successful demonstration states near each start's block pose and
    near its mirror image's, with the radii used.
    """
    from ..agents.pusht_policy import load_policy
    from ..agents.pusht_rollout import evaluate
    from ..envs.pusht_demos import mirror_states

    paths = paths or {}
    seeds = [int(s) for s in seeds]
    out: dict = {"seeds": [seeds[0], seeds[-1]], "n_episodes": len(seeds), "sampler_seed": sampler_seed}
    for name in VARIANTS:
        ev = evaluate(load_policy(name, device=device or "cpu", seed=sampler_seed, path=paths.get(name)), seeds,
                      n_timing=1)
        out[name] = {"mean_max_coverage": round(ev["mean_max_coverage"], 4), "success": round(ev["success"], 4),
                     "n_episodes": ev["n_episodes"],
                     "ci95": {"mean_max_coverage": round(ev["ci95"]["mean_max_coverage"], 4),
                              "success": [round(x, 4) for x in ev["ci95"]["success"]]},
                     "max_coverage": [round(float(c), 4) for c in ev["max_coverage"]]}
    states, starts = _successful_demo_states(), start_states(seeds)
    out["demos_near"] = {"own": demos_near(starts, states).tolist(),
                         "mirror": demos_near(mirror_states(starts), states).tolist(),
                         "near_px": NEAR_PX, "near_rad": NEAR_RAD}
    return out


def paired_difference(entry: dict, a: str, b: str) -> tuple[float, float]:
    """Mean max coverage of policy ``a`` minus policy ``b`` on the same starts, per episode: ``(mean, half-width
    of its 95 % t interval)``. Pairing removes the starts' own difficulty from the comparison."""
    return mean_ci95(np.asarray(entry[a]["max_coverage"]) - np.asarray(entry[b]["max_coverage"]))


def gain_summary(entry: dict, threshold: float = 0.05) -> dict:
    """Where the mirror helped: episodes whose max coverage the mirror raised by more than ``threshold``
    (``helped``), lowered by more (``hurt``), and the demonstrations near the starts of each group.

    Returns ``{"helped": n, "hurt": n, "own_median": {group: median}, "mirror_richer": {group: share of
    starts whose mirror image has more demonstrations nearby}, "gain": (mean, half-width)}``.
    """
    gain = (np.asarray(entry["pusht-diffusion-policy"]["max_coverage"])
            - np.asarray(entry["pusht-diffusion-policy-no-mirror"]["max_coverage"]))   # per episode
    own, mirror = np.asarray(entry["demos_near"]["own"]), np.asarray(entry["demos_near"]["mirror"])
    groups = {"helped": gain > threshold, "others": gain <= threshold}
    return {"helped": int((gain > threshold).sum()), "hurt": int((gain < -threshold).sum()),
            "own_median": {g: float(np.median(own[m])) if m.any() else float("nan") for g, m in groups.items()},
            "mirror_richer": {g: float((mirror > own)[m].mean()) if m.any() else float("nan")
                              for g, m in groups.items()},
            "gain": mean_ci95(gain)}
