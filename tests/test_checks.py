"""The tolerance checks of the notebooks and the intervals of the benchmarks."""

import math

import numpy as np
import pytest
import torch

from tutorial_lib.core.checks import ClaimError, expect, expect_each
from tutorial_lib.core.stats import mean_ci95, summarize_scores, summarize_success, wilson_ci95


def test_expect_prints_the_claim_not_the_value(capsys):
    assert expect(0.9412, near=0.94, tol=0.03, claim="coverage") is None   # nothing to display after a check
    assert capsys.readouterr().out == "✓ coverage: 0.94 ± 0.03\n"
    expect(torch.tensor(3.0), between=(2, 4), claim="ratio", digits=1)
    expect(np.float32(0.2), at_least=0.1, claim="gap")
    expect(5, at_most=7, claim="count", digits=0)
    assert capsys.readouterr().out.splitlines() == ["✓ ratio: between 2.0 and 4.0", "✓ gap: at least 0.10",
                                                    "✓ count: at most 7"]


@pytest.mark.parametrize("value, band", [
    (0.90, dict(near=0.94, tol=0.03)), (0.98, dict(near=0.94, tol=0.03)), (1.9, dict(between=(2, 4))),
    (0.05, dict(at_least=0.1)), (8, dict(at_most=7)), (float("nan"), dict(at_least=0.0)),
])
def test_expect_fails_outside_the_band_and_names_the_claim(value, band):
    with pytest.raises(ClaimError, match="the diffusion policy's coverage: measured"):
        expect(value, claim="the diffusion policy's coverage", **band)


def test_expect_bounds_are_inclusive():
    expect(0.97, near=0.94, tol=0.03, claim="edge", quiet=True)
    expect(2.0, between=(2, 4), claim="edge", quiet=True)


@pytest.mark.parametrize("band", [dict(), dict(near=1.0), dict(near=1.0, tol=-1), dict(between=(3, 1)),
                                  dict(near=1.0, tol=0.1, at_least=0.5)])
def test_expect_rejects_malformed_bands(band):
    with pytest.raises(ValueError):
        expect(1.0, claim="x", **band)
    with pytest.raises(ValueError, match="claim"):
        expect(1.0, claim="", near=1.0, tol=0.1)


def test_expect_each_names_the_element(capsys):
    expect_each([1.2, 1.5, 1.7], between=(1.0, 2.5), claim="DDPM quality per seed")
    assert capsys.readouterr().out == "✓ DDPM quality per seed (all 3): between 1.00 and 2.50\n"
    with pytest.raises(ClaimError, match=r"element 2 of 3"):
        expect_each([1.2, 1.5, 3.0], between=(1.0, 2.5), claim="DDPM quality per seed")


def test_mean_ci95_matches_the_t_interval():
    x = np.array([0.9, 0.95, 0.85, 1.0, 0.92])
    mean, half = mean_ci95(x)
    assert mean == pytest.approx(x.mean())
    assert half == pytest.approx(2.776 * x.std(ddof=1) / math.sqrt(5))
    assert mean_ci95([0.5]) == (0.5, 0.0)
    # large n: close to the normal interval
    rng = np.random.default_rng(0)
    y = rng.normal(size=500)
    assert mean_ci95(y)[1] == pytest.approx(1.9647 * y.std(ddof=1) / math.sqrt(500), rel=1e-3)


def test_wilson_interval_known_values():
    # 50 % of 50: the Wilson interval is about [0.366, 0.634]
    low, high = wilson_ci95(25, 50)
    assert low == pytest.approx(0.3664, abs=1e-3) and high == pytest.approx(0.6336, abs=1e-3)
    low, high = wilson_ci95(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17      # never collapses to a point
    assert wilson_ci95(20, 20)[1] == 1.0
    with pytest.raises(ValueError):
        wilson_ci95(3, 2)


def test_summaries_carry_the_episode_count():
    s = summarize_scores([0.9, 0.8, 1.0])
    assert s["n_episodes"] == 3 and s["mean"] == pytest.approx(0.9) and s["ci95"] > 0
    r = summarize_success([True, False, True, True])
    assert r["rate"] == 0.75 and r["n_episodes"] == 4 and r["ci95"][0] < 0.75 < r["ci95"][1]
