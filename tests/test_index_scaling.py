"""IVF unit costs and shard plans: the arithmetic of "from 10 M to 1 B items".

Fast tests: the fit recovers planted unit costs, the prediction counts the work
an IVF search does, and the plan's shard counts are the smallest that fit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.scaling import IvfCost, ScalingInputError, plan_shards


def test_fit_recovers_planted_unit_costs():
    scanned = np.array([200.0, 800.0, 3200.0, 12800.0])
    quantizer_ms = 0.016  # 800 centroids at 20 ns
    total = 0.05 + quantizer_ms + 4e-6 * scanned
    cost = IvfCost.fit(scanned, total, quantizer_ms=quantizer_ms, nlist=800)
    assert cost.per_code_ms == pytest.approx(4e-6)
    assert cost.per_centroid_ms == pytest.approx(2e-5)
    assert cost.fixed_ms == pytest.approx(0.05)


def test_noise_cannot_make_a_bigger_index_faster():
    cost = IvfCost.fit([100, 200], [0.3, 0.1], quantizer_ms=0.5, nlist=100)
    assert cost.per_code_ms == 0.0  # the slope is clamped, not negative
    assert cost.fixed_ms == 0.0  # the intercept less the centroid scan, clamped


def test_prediction_counts_centroids_and_codes():
    cost = IvfCost(fixed_ms=0.1, per_centroid_ms=1e-5, per_code_ms=1e-6)
    # 1e6 items in 1,000 lists, 10 probed: 1,000 centroids and 10,000 codes
    assert float(cost.predict_ms(10**6, 1000, 10)) == pytest.approx(0.1 + 0.01 + 0.01)
    # with nlist ~ sqrt(N) both scans grow as sqrt(N): 100x the items, 10x the work
    small, large = cost.predict_ms([10**6, 10**8], [1000, 10000], 10) - 0.1
    assert large == pytest.approx(10 * small)
    # nprobe beyond nlist scans every list once, not more
    assert float(cost.predict_ms(100, 4, 10)) == pytest.approx(0.1 + 4e-5 + 100e-6)


def test_plan_picks_the_fewest_shards_for_memory_and_for_latency():
    def shard_ms(items: int) -> float:
        return 1.0 + items / 1e6  # 1 ms + 1 ms per million items

    plan = plan_shards(
        10**8,
        2.5e11,  # 250 GB
        ram_per_shard_bytes=1e11,
        shard_ms=shard_ms,
        latency_budget_ms=11.0,
        peak_qps=1000,
        utilisation=0.5,
    )
    assert plan.shards_for_memory == 3
    assert plan.shards_for_latency == 10  # 10 M items per shard = 11 ms exactly
    assert shard_ms(math.ceil(10**8 / 9)) > 11.0  # 9 would not do
    assert plan.shards == 10 and plan.items_per_shard == 10**7
    assert plan.shard_ms == pytest.approx(11.0)
    assert plan.cores == pytest.approx(1000 * 10 * 11.0 / 1000 / 0.5)
    assert plan.bytes_per_shard == pytest.approx(2.5e10)


def test_a_budget_below_the_fixed_cost_is_refused():
    with pytest.raises(ScalingInputError, match="fixed cost per query is too high"):
        plan_shards(
            10**6,
            1e9,
            ram_per_shard_bytes=1e9,
            shard_ms=lambda items: 5.0 + items * 1e-9,
            latency_budget_ms=2.0,
            peak_qps=100,
        )


def test_errors_name_the_fix():
    with pytest.raises(ScalingInputError, match="measure two or more nprobe"):
        IvfCost.fit([100, 100], [0.1, 0.2], quantizer_ms=0.0, nlist=10)
    with pytest.raises(ScalingInputError, match="must be finite and >= 0"):
        IvfCost(fixed_ms=-1.0, per_centroid_ms=0.0, per_code_ms=0.0)
    with pytest.raises(ScalingInputError, match=r"utilisation must lie in \(0, 1\]"):
        plan_shards(
            10,
            1.0,
            ram_per_shard_bytes=1.0,
            shard_ms=lambda items: 1.0,
            latency_budget_ms=2.0,
            peak_qps=1.0,
            utilisation=1.5,
        )
    assert issubclass(ScalingInputError, MlsdError)
