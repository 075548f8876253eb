"""Simulators with ground truth: worlds whose best possible model is known.

Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb``. A world draws
its entities from a seed, generates traffic day by day, and logs the true probability
next to every outcome, so a model's quality can be stated as a distance from the
optimum.

* :mod:`~mlsd_lib.worlds.ads`: users, ads and contexts, with interactions,
  position bias, drift and delayed clicks; its knobs in
  :mod:`~mlsd_lib.worlds.ads_config`, its true p(click) in
  :mod:`~mlsd_lib.worlds.ads_truth`, and the log it writes in
  :mod:`~mlsd_lib.worlds.ads_log`.
* :mod:`~mlsd_lib.worlds.recsys`: a video-streaming home feed (introduced in
  ``casestudies/recommender/index.md``): users with tastes, patience and
  heavy-tailed activity, a catalogue of series, films and short-form videos,
  sessions served by any feed policy, plays and watch time, drifting tastes;
  its knobs in :mod:`~mlsd_lib.worlds.recsys_config`, the events it can inject
  (trends, genre shifts, catalogue launches) in
  :mod:`~mlsd_lib.worlds.recsys_events`, its true engagement model in
  :mod:`~mlsd_lib.worlds.recsys_truth`, the world-policy contract in
  :mod:`~mlsd_lib.worlds.recsys_feed`, the built-in policies (random, popular,
  legacy, oracle) in :mod:`~mlsd_lib.worlds.recsys_policies`, the
  impression log in :mod:`~mlsd_lib.worlds.recsys_log`, and a policy serving
  precomputed ranked lists in :mod:`~mlsd_lib.worlds.recsys_list_policy`.
* :mod:`~mlsd_lib.worlds.images_market`: the image world's shoppers and market over time
  (queries, clicks and saves on any shown list, stock and price changes).
* :mod:`~mlsd_lib.worlds.images_config`: the image world's knobs
  (:class:`~mlsd_lib.worlds.images_config.ImageWorldConfig`) and how a user's photo
  differs from a catalogue shot (:class:`~mlsd_lib.worlds.images_config.QueryStyle`).
* :mod:`~mlsd_lib.worlds.images_render`: the vectorized renderer (signed-distance
  shapes, patterns, rooms, camera).
* :mod:`~mlsd_lib.worlds.images`: :class:`~mlsd_lib.worlds.images.ImageWorld`, products
  with true identities, catalogue images, user photos with boxes, duplicates and graded
  similarity.
* :mod:`~mlsd_lib.worlds.injected_shifts`: covariate (mix) and concept shifts injected
  into a log at a known time.
"""

from mlsd_lib.worlds.ads import (
    AdsWorld,
    AdsWorldConfig,
    ImpressionLog,
    bayes_normalized_entropy,
    normalized_entropy,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig, TruthWeights
from mlsd_lib.worlds.recsys_events import CatalogueLaunch, GenreShift, Trend
from mlsd_lib.worlds.recsys_feed import FeedRequest, FeedResponse
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_policies import (
    LegacyPolicy,
    OraclePolicy,
    PopularityPolicy,
    RandomPolicy,
)

__all__ = [
    "AdsWorld",
    "AdsWorldConfig",
    "CatalogueLaunch",
    "FeedRequest",
    "FeedResponse",
    "GenreShift",
    "ImpressionLog",
    "LegacyPolicy",
    "OraclePolicy",
    "PopularityPolicy",
    "RandomPolicy",
    "RecsysLog",
    "RecsysWorld",
    "RecsysWorldConfig",
    "Trend",
    "TruthWeights",
    "bayes_normalized_entropy",
    "normalized_entropy",
]
