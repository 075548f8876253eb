"""Visual search's numbers: every figure of the case study's page, recomputed."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest

from mlsd_lib.capacity import CapacityInputError, sensitivity
from mlsd_lib.index.scaling import IvfCost
from mlsd_lib.visual.scale import (
    LATENCY_BUDGET_MS,
    REPRESENTATIONS,
    VisualAssumptions,
    bytes_per_image,
    index_representations,
    latency_budget,
    measured_embedder_estimate,
    measured_index_estimate,
    production_estimate,
    world_assumptions,
)

# -- the page's figures ----------------------------------------------------------------


def test_traffic_matches_the_page() -> None:
    e = production_estimate()
    assert e["requests per day"] == 1e8
    assert e["average QPS"] == pytest.approx(1_157.4, abs=0.1)  # "≈ 1,160"
    page = {
        "average QPS": 1_160,  # "about 1.2 k QPS"
        "peak QPS": 3_470,  # "about 3.5 k QPS"
        "average ANN searches per second": 2_320,  # "about 2.3 k/s"
        "peak ANN searches per second": 6_940,  # "about 6.9 k/s"
        "online embedder calls per second at peak": 3_470,  # images/s
        "average inferences per second": 4.6e5,  # candidates re-ranked
        "peak inferences per second": 1.4e6,
    }
    for quantity, figure in page.items():
        assert e[quantity] == pytest.approx(figure, rel=0.01), quantity
    # Every candidate re-ranked at peak is one of 200 images of a peak search.
    assert e["peak inferences per second"] == pytest.approx(
        e["peak ANN searches per second"] * 200
    )


def test_embedder_compute_matches_the_page() -> None:
    e = production_estimate()
    assert e["embedder size (float32)"] == pytest.approx(102.4e6)  # "≈ 102 MB"
    assert e["embedder multiply-adds per second at peak"] == pytest.approx(
        1.4e13, rel=0.01
    )
    assert e["embedder FLOP/s at peak"] == pytest.approx(28e12, rel=0.01)
    assert e["catalogue images"] == 2e8
    assert e["new catalogue images per day"] == pytest.approx(2e6)
    assert e["new catalogue images per second"] == pytest.approx(23, rel=0.01)
    assert e["full re-embed time"] == pytest.approx(1e5 / 3_600)  # 10^5 s
    assert e["full re-embed time"] == pytest.approx(28, rel=0.01)  # "about 28 hours"


def test_index_table_matches_the_page() -> None:
    table = index_representations()
    assert list(table.index) == list(REPRESENTATIONS)
    assert table["bytes per image"].tolist() == [1_024, 512, 40, 4]
    assert table["total"].tolist() == ["205 GB", "102 GB", "8 GB", "800 MB"]
    e = production_estimate()
    for rep, total in zip(REPRESENTATIONS, table["total bytes"], strict=True):
        assert e[f"{rep} for all images"] == pytest.approx(total)
    assert e["float32 vectors for all images"] == pytest.approx(204.8e9)
    assert e["IVF-PQ codes + ids for all images"] == pytest.approx(8e9)
    assert e["image-to-product map for all images"] == pytest.approx(0.8e9)


def test_search_cost_matches_the_page() -> None:
    e = production_estimate()
    assert e["re-rank vector fetch at peak"] == pytest.approx(0.71e9, rel=0.01)
    assert e["vectors per IVF list"] == pytest.approx(3_050, rel=0.001)
    assert e["codes scanned per search"] == pytest.approx(195_000, rel=0.002)
    assert e["code distances per second at peak"] == pytest.approx(1.4e9, rel=0.04)


def test_feature_store_and_logs_match_the_page() -> None:
    e = production_estimate()
    assert e["online feature store memory"] == pytest.approx(6e9)
    assert e["online store with Redis overhead"] == pytest.approx(12e9)
    assert e["pipelined Redis reads per second at peak"] == pytest.approx(
        6_940, rel=0.01
    )
    # The page rounds a query record of 2 x 512 + 500 = 1,524 B to "about 1.5 KB".
    assert e["query record size"] == 1_524
    assert e["query log per day"] == pytest.approx(150e9, rel=0.02)
    assert e["result impressions per day"] == pytest.approx(2e9)
    assert e["impression log per day"] == pytest.approx(200e9)
    assert e["clicks per day"] == pytest.approx(4e7)
    assert e["click log per day"] == pytest.approx(4e9)
    assert e["event log per day"] == pytest.approx(354e9, rel=0.01)
    assert e["event log per day"] == pytest.approx(
        e["query log per day"] + e["impression log per day"] + e["click log per day"]
    )
    assert e["raw query images per day (if kept)"] == pytest.approx(10e12)
    assert e["user embedding store (if personalized)"] == pytest.approx(128e9)
    assert e["downtime allowed per 30 days"] == pytest.approx(43.2)


def test_latency_budget_matches_the_page() -> None:
    table = latency_budget()
    assert list(table.index[: len(LATENCY_BUDGET_MS)]) == list(LATENCY_BUDGET_MS)
    assert table.loc["total"].tolist() == [250, 170]
    assert table.loc["headroom"].tolist() == [150, 80]
    assert table.loc["detect", "crop"] == 0


def test_ten_billion_images_follow_up() -> None:
    """The follow-up "How would the index scale to 10 billion images?"."""
    a = VisualAssumptions(products=2.5e9)  # x 4 images = 10^10
    e = production_estimate(a)
    assert e["catalogue images"] == 1e10
    assert e["IVF-PQ codes + ids for all images"] == pytest.approx(400e9)
    assert e["IVF-PQ codes + ids for all images"] / 25e9 == pytest.approx(16)
    assert e["full re-embed time"] * 3_600 == pytest.approx(5e6)
    assert e["full re-embed time"] / 24 == pytest.approx(58, rel=0.01)
    # 2.5 G products no longer fit int32: the map widens to int64.
    assert bytes_per_image("image-to-product map", a) == 8


# -- properties ------------------------------------------------------------------------


def test_every_row_has_a_formula_and_a_finite_value() -> None:
    frame = production_estimate().to_frame()
    assert frame["quantity"].is_unique
    assert (frame["formula"].str.len() > 0).all()
    assert frame["value"].map(math.isfinite).all()


def test_doubling_the_catalogue_moves_only_catalogue_rows() -> None:
    quantities = [
        "peak QPS",
        "online embedder calls per second at peak",
        "IVF-PQ codes + ids for all images",
        "float16 vectors for all images",
        "re-rank vector fetch at peak",
        "code distances per second at peak",
        "online feature store memory",
        "full re-embed time",
    ]
    table = sensitivity(
        production_estimate,
        VisualAssumptions(),
        ["images_per_product", "embedding_dim", "ivf_lists", "queries_per_day"],
        quantities,
    )
    row = table.loc["images_per_product"]
    assert row["peak QPS"] == 1
    assert row["online feature store memory"] == 1  # per product, not per image
    assert row["IVF-PQ codes + ids for all images"] == pytest.approx(2)
    assert row["code distances per second at peak"] == pytest.approx(2)
    dim = table.loc["embedding_dim"]
    assert dim["IVF-PQ codes + ids for all images"] == 1  # codes do not grow with d
    assert dim["float16 vectors for all images"] == pytest.approx(2)
    assert dim["re-rank vector fetch at peak"] == pytest.approx(2)
    assert table.loc["ivf_lists", "code distances per second at peak"] == 0.5
    assert table.loc["queries_per_day", "online embedder calls per second at peak"] == 2
    assert table.loc["queries_per_day", "full re-embed time"] == 1


def test_precomputed_regions_cut_the_online_embedder_load() -> None:
    none = production_estimate(VisualAssumptions(precomputed_region_share=0.0))
    half = production_estimate()
    assert half["online embedder calls per second at peak"] == pytest.approx(
        none["online embedder calls per second at peak"] / 2
    )
    assert half["peak ANN searches per second"] == none["peak ANN searches per second"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"queries_per_day": 0}, "queries_per_day must be > 0"),
        ({"products": -1}, "products must be a finite number >= 0"),
        ({"click_rate": 1.5}, "click_rate is a share and must be in \\[0, 1\\]"),
        ({"peak_to_average": 0.5}, "peak_to_average must be >= 1"),
        ({"ivf_probes": 100_000}, "cannot probe more lists than exist"),
        ({"images_per_region": 10}, "must over-fetch images"),
        ({"availability": 1.0}, "availability must be in \\(0, 1\\)"),
        ({"redis_overhead": 0.5}, "redis_overhead must be >= 1"),
        ({"embedding_dim": float("nan")}, "embedding_dim must be a finite number"),
    ],
)
def test_impossible_assumptions_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(CapacityInputError, match=message):
        VisualAssumptions(**changes)


def test_unknown_representation_names_the_known_ones() -> None:
    with pytest.raises(CapacityInputError, match=r"use one of .*float16 vectors"):
        bytes_per_image("HNSW")


def test_world_assumptions_take_the_worlds_catalogue() -> None:
    world = SimpleNamespace(n_products=1_224, config=SimpleNamespace(catalogue_views=4))
    a = world_assumptions(world, embedding_dim=128)
    assert a.catalogue_images == 4_896
    assert a.embedding_dim == 128
    assert a.queries_per_day == VisualAssumptions().queries_per_day
    e = production_estimate(a)
    assert e["float32 vectors for all images"] == 4_896 * 128 * 4
    assert e["image-to-product map for all images"] == 4_896 * 2  # int16 suffices


# -- measured figures tied to the arithmetic ------------------------------------


def test_measured_embedder_scales_by_multiply_adds() -> None:
    # A core that embeds 150 images/s of a 60 M multiply-add net delivers 9 G/s,
    # so a 4 G multiply-add embedder runs 2.25 images/s on it.
    e = measured_embedder_estimate(150.0, 60e6)
    assert e["measured multiply-adds per second per core"] == pytest.approx(9e9)
    assert e["production embedder images per second per core"] == pytest.approx(2.25)
    online = production_estimate()["online embedder calls per second at peak"]
    assert e["cores for the online peak, measured embedder"] == math.ceil(
        online / (150 * 0.6)
    )
    assert e["cores for the online peak, production embedder"] == math.ceil(
        online / (2.25 * 0.6)
    )
    assert e["full re-embed on one core, measured embedder"] == pytest.approx(
        2e8 / 150 / 3_600
    )
    assert e["cores to re-embed in one day, production embedder"] == math.ceil(
        2e8 / (2.25 * 86_400)
    )


def test_measured_index_plan() -> None:
    cost = IvfCost(fixed_ms=0.1, per_centroid_ms=1e-5, per_code_ms=5e-5)
    e = measured_index_estimate(40.0, cost)
    base = production_estimate()
    assert e["IVF-PQ index at measured bytes per vector"] == pytest.approx(
        base["IVF-PQ codes + ids for all images"]
    )
    # 0.1 ms + 65,536 centroids x 10 ns + 195,313 codes x 50 ns
    search_ms = 0.1 + 65_536 * 1e-5 + base["codes scanned per search"] * 5e-5
    assert e["search time per region on one core"] == pytest.approx(search_ms)
    assert e["of which scanning codes"] == pytest.approx(
        base["codes scanned per search"] * 5e-5
    )
    assert e["cores for ANN search at peak"] == math.ceil(
        base["peak ANN searches per second"] * search_ms / 1e3 / 0.6
    )


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_measurements_must_be_measured(bad: float) -> None:
    with pytest.raises(CapacityInputError, match="measure it first"):
        measured_embedder_estimate(bad, 1e6)
    with pytest.raises(CapacityInputError, match="measure it first"):
        measured_index_estimate(bad, IvfCost(0.1, 0.0, 1e-5))


def test_assumptions_are_frozen_and_replaceable() -> None:
    a = VisualAssumptions()
    with pytest.raises(AttributeError):
        a.products = 1.0  # type: ignore[misc]
    assert replace(a, products=1e6).catalogue_images == 4e6
