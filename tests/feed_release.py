"""A small feed release and the helpers the feed tests share.

Not a test module (pytest collects ``test_*.py`` only): ``test_recsys_feed.py``
and ``test_recsys_feed_triton.py`` import it. The release is
:func:`~mlsd_lib.recsys.quick_release.build_quick_release` on 1,500 users and
2,000 items over 2 days with short training (a few seconds): the feed tests
check that the stages run together and obey their rules, not how good the
models are.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import shutil
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import redis

from mlsd_lib.features.records import entity_key
from mlsd_lib.features.stream_keys import history_key
from mlsd_lib.models.training import TrainingConfig
from mlsd_lib.recsys.feed import FeedModels, FeedPipeline, FeedResult, FeedUser
from mlsd_lib.recsys.quick_release import QuickRelease, build_quick_release
from mlsd_lib.recsys.serving import deploy_release
from mlsd_lib.serving.gateway.budgets import DependencyPools
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig

CONFIG = RecsysWorldConfig(n_users=1500, n_items=2000)
FAST = TrainingConfig(epochs=2, batch_size=512, lr=3e-3, progress=False, num_threads=1)


def build(folder: Path) -> QuickRelease:
    """A fresh release under ``folder``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit
        return build_quick_release(
            folder, days=2, config=CONFIG, tower_training=FAST,
            ranker_training=replace(FAST, epochs=1),
        )  # fmt: skip


@functools.cache
def shared_release() -> QuickRelease:
    """One release for every feed test module of the session (built once, in a
    temporary folder removed at exit): the modules only read it."""
    folder = Path(tempfile.mkdtemp(prefix="mlsd-feed-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return build(folder)


def deployed_in_process(release: QuickRelease) -> FeedModels:
    """``release`` loaded on a fresh in-process model server (no Triton)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit
        return deploy_release(
            release.registry, release.release, InProcessModelServer("test"),
            release.item_features,
        )  # fmt: skip


def other_db(url: str, db: int = 7) -> str:
    """The same Redis, another database: the session's other tests flush db 0."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/{db}"


def pipeline(release: QuickRelease, client: redis.Redis, **kwargs) -> FeedPipeline:
    return FeedPipeline(
        client,
        release.fold,
        release.tables,
        DependencyPools(("redis", "models"), threads=2),
        clock=lambda: release.now,
        world_epoch=release.epoch,
        **kwargs,
    )


def serve(pipe: FeedPipeline, models: FeedModels, *users: FeedUser) -> FeedResult:
    """The pipeline's answer to the last of ``users`` (after the others)."""

    async def run() -> FeedResult:
        for user in users:
            result = await pipe.serve(models, user)
        return result

    try:
        return asyncio.run(run())
    finally:
        pipe.pools.close()


def user_of(release: QuickRelease, user_id: int, page_size: int = 20) -> FeedUser:
    profile = release.user_profiles().iloc[user_id]
    return FeedUser(
        user_id, int(profile.region), int(profile.maturity_limit), page_size
    )


def body(release: QuickRelease, user_id: int, **changes: object) -> dict:
    """The JSON body of ``user_id``'s feed request."""
    user = user_of(release, user_id)
    return {
        "user_id": user_id,
        "context": {"region": user.region, "maturity_limit": user.maturity_limit},
        **changes,
    }


def active_users(release: QuickRelease, n: int = 40) -> list[int]:
    """The users with the most engaged plays (so a history in Redis)."""
    plays = np.bincount(release.log.user[release.log.engaged])
    return [int(u) for u in np.argsort(-plays, kind="stable")[:n]]


def watched(client: redis.Redis, release: QuickRelease, user_id: int) -> set[int]:
    """The item ids of the user's history list in Redis."""
    fold = release.fold
    key = history_key(fold.name, fold.version, entity_key([user_id]))
    return {int(entry.split(b":")[0]) for entry in client.lrange(key, 0, -1)}
