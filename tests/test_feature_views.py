from datetime import timedelta

import numpy as np
import pytest

from mlsd_lib.features.views import (
    Feature,
    FeatureRef,
    FeatureRegistry,
    FeatureStoreError,
    FeatureView,
    UnknownFeature,
    UnknownView,
)


def user_view(**overrides) -> FeatureView:
    fields = dict(
        name="user_stats",
        entities=("user_id",),
        features=(Feature("ctr_7d", default=0.02), Feature("clicks_7d", "int64")),
        ttl=timedelta(days=1),
    )
    fields.update(overrides)
    return FeatureView(**fields)


def test_positions_and_defaults_follow_declaration_order():
    view = user_view()
    assert view.feature_names == ["ctr_7d", "clicks_7d"]
    assert view.position("clicks_7d") == 1
    np.testing.assert_array_equal(view.defaults, np.array([0.02, 0.0], np.float32))


def test_unknown_feature_lists_the_known_ones():
    with pytest.raises(
        UnknownFeature, match=r"'ctr_1d' is not in view 'user_stats'.*ctr_7d"
    ):
        user_view().position("ctr_1d")


def test_unknown_view_lists_the_registered_ones():
    registry = FeatureRegistry([user_view()])
    with pytest.raises(UnknownView, match=r"'ad_stats' is not registered.*user_stats"):
        registry.resolve(["ad_stats:ctr"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "a:b"}, "without ':'"),
        ({"entities": ()}, "at least one entity"),
        ({"features": ()}, "no features"),
        ({"features": (Feature("x"), Feature("x"))}, r"repeats features \['x'\]"),
        ({"features": (Feature("user_id"),)}, "clash"),
        ({"ttl": timedelta(0)}, "positive ttl"),
        ({"version": 0}, "version >= 1"),
    ],
)
def test_malformed_views_are_refused(overrides, message):
    with pytest.raises(FeatureStoreError, match=message):
        user_view(**overrides)


def test_feature_dtype_must_be_known():
    with pytest.raises(FeatureStoreError, match="dtype 'string'"):
        Feature("country", dtype="string")


@pytest.mark.parametrize("text", ["ctr_7d", ":ctr", "user_stats:"])
def test_feature_refs_must_name_view_and_feature(text):
    with pytest.raises(FeatureStoreError, match="view:feature"):
        FeatureRef.parse(text)


def test_registry_refuses_duplicate_views():
    with pytest.raises(FeatureStoreError, match="registered twice"):
        FeatureRegistry([user_view(), user_view()])


def test_a_stream_fold_checks_its_view_is_fed_by_a_stream_and_keyed_by_its_field():
    from mlsd_lib.features.views import BatchSource, StreamSource

    streamed = user_view(source=StreamSource("events"))
    streamed.check_stream_keyed_by("user_id", "counts")
    with pytest.raises(FeatureStoreError, match=r"'user_stats' is not fed by a stream"):
        user_view(source=BatchSource("t")).check_stream_keyed_by("user_id", "counts")
    with pytest.raises(
        FeatureStoreError,
        match=r"^counts keyed by 'ad_id' cannot fill view 'user_stats', whose "
        r"entities are \['user_id'\]; one entity\.$",
    ):
        streamed.check_stream_keyed_by("ad_id", "counts", "; one entity")
