"""How fast the synthetic recsys world simulates a week under the legacy policy.

    python benchmarks/recsys_world_speed.py [--quick]

Builds the ``small`` :class:`mlsd_lib.worlds.recsys.RecsysWorld` (20,000 users,
10,000 items) and times ``simulate`` of seven days under the
:class:`~mlsd_lib.worlds.recsys_policies.LegacyPolicy` (the logging policy
whose logs the case study trains on), best of two runs on fresh worlds, so a
busy machine's worst moment does not count. The target is a week in under
20 s: the notebooks simulate a week before they train anything. ``--quick``
times the ``quick`` preset instead.

The last line on stdout is one JSON object: ``{"impressions_per_s": ...}``
plus the sizes measured.
"""

from __future__ import annotations

import argparse
import json
import time

from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_policies import LegacyPolicy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick preset")
    args = parser.parse_args()
    config = RecsysWorldConfig.quick() if args.quick else RecsysWorldConfig.small()
    days, repeats = 7, 2

    best, build_s, rows, requests = float("inf"), 0.0, 0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        world = RecsysWorld(config)
        build_s = time.perf_counter() - start
        policy = LegacyPolicy(world)
        start = time.perf_counter()
        log = world.simulate(policy, 0, days)
        best = min(best, time.perf_counter() - start)
        rows, requests = len(log), log.n_requests
    result = {
        "impressions_per_s": round(rows / best),
        "week_s": round(best, 2),
        "impressions": rows,
        "requests": requests,
        "users": config.n_users,
        "items": config.n_items,
        "best_of": repeats,
        "build_s": round(build_s, 3),
    }
    print(
        f"simulate: {days} days, {rows} impressions ({requests} feeds) in "
        f"{best:.2f} s (best of {repeats})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
