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
"""

from mlsd_lib.worlds.ads import (
    AdsWorld,
    AdsWorldConfig,
    ImpressionLog,
    bayes_normalized_entropy,
    normalized_entropy,
)

__all__ = [
    "AdsWorld",
    "AdsWorldConfig",
    "ImpressionLog",
    "bayes_normalized_entropy",
    "normalized_entropy",
]
