"""The feed's release on a real Triton: the user tower and the ranker loaded from
the model repository (Python backend, TorchScript, sha256 checked), answering
exactly what the in-process server answers for the same requests.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import redis
from feed_release import (
    active_users,
    other_db,
    pipeline,
    serve,
    shared_release,
    user_of,
)

from mlsd_lib.recsys.serving import deploy_release
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.model_repository import read_model_config
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer

pytestmark = [pytest.mark.triton, pytest.mark.redis]


@pytest.fixture(scope="module")
def release():
    return shared_release()


def test_the_release_on_triton_serves_the_in_process_feed(
    release, requires_triton, real_redis_url
):
    client = redis.Redis.from_url(other_db(real_redis_url, 9), socket_timeout=1.0)
    client.flushdb()
    users = [user_of(release, u) for u in active_users(release, 8)]
    try:
        release.load_histories(client)
        with TritonRepositoryServer() as triton, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            served = deploy_release(
                release.registry, release.release, triton, release.item_features
            )
            assert triton.model_names == ["recs_ranker-v1", "recs_user_tower-v1"]
            config = read_model_config(triton.repository / "recs_user_tower-v1")
            assert [i.name for i in config.input] == ["history", "dense", "categorical"]
            assert list(config.input[0].dims) == [50] and config.backend == "python"
            on_triton = [
                serve(pipeline(release, client), served, *users[: i + 1])
                for i in range(len(users))
            ]
        local = deploy_release(
            release.registry, release.release, InProcessModelServer("ref"),
            release.item_features,
        )  # fmt: skip
        in_process = [
            serve(pipeline(release, client), local, *users[: i + 1])
            for i in range(len(users))
        ]
    finally:
        client.flushdb()
        client.close()
    for got, expected in zip(on_triton, in_process, strict=True):
        assert not got.degraded, got.reason
        assert got.items.tolist() == expected.items.tolist()
        assert got.sources == expected.sources
        np.testing.assert_allclose(got.p_play, expected.p_play, rtol=1e-5)
        np.testing.assert_allclose(got.e_minutes, expected.e_minutes, rtol=1e-5)
        np.testing.assert_allclose(
            got.retrieval_score, expected.retrieval_score, rtol=1e-5, atol=1e-6
        )
        assert got.versions == expected.versions
