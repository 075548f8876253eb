"""How fast the synthetic ads world generates traffic.

    python benchmarks/world_speed.py [--quick]

Builds the default :class:`mlsd_lib.worlds.ads.AdsWorld`, then times
``simulate`` (best of a few repeats, so machine noise does not count) on one
day of impressions. The issue asks for at least a million impressions per
second: a book that trains on millions of simulated impressions should not wait
on the simulator.

The last line on stdout is one JSON object: ``{"impressions_per_s": ...}`` plus
the sizes measured.
"""

from __future__ import annotations

import argparse
import json
import time

from mlsd_lib.worlds.ads import AdsWorld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller day")
    args = parser.parse_args()
    n = 200_000 if args.quick else 2_000_000
    repeats = 5

    start = time.perf_counter()
    world = AdsWorld(seed=0)
    build_s = time.perf_counter() - start
    world.simulate(1, 10_000)  # warm up
    best = float("inf")
    for repeat in range(repeats):
        start = time.perf_counter()
        world.simulate(1, n, start_day=repeat)
        best = min(best, time.perf_counter() - start)
    result = {
        "impressions_per_s": round(n / best),
        "impressions": n,
        "best_of": repeats,
        "build_s": round(build_s, 3),
    }
    print(f"simulate: {n} impressions in {best:.3f} s (best of {repeats})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
