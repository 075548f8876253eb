"""How fast the synthetic image world renders catalogue shots and user photos.

    python benchmarks/image_render.py [--quick]

Builds the ``small`` :class:`mlsd_lib.worlds.images.ImageWorld` (64 x 64
images) and times, best of three runs so a busy machine's worst moment does
not count, (1) the whole catalogue (``catalogue_views`` studio shots of every
product) and (2) one phone-style photo of every product (clutter, up to two
distractor products, lighting, blur, noise). ``images_per_s`` is both together:
images rendered over seconds spent. The target is at least 2,000 images/s on
a 2-core machine: the notebooks render their worlds in a few seconds, and
training draws fresh photos each epoch. ``--quick`` times the ``quick``
preset instead.

On a shared machine wall-clock rates fall with the load, so the JSON also
gives ``load_1min`` (the 1-minute load average when the run ended) and
``images_per_cpu_s`` (images per CPU-second of this process: what one core
does, whatever the neighbours do; the renderer drops to one torch thread when
the machine is busy, see ``mlsd_lib.worlds.images_render.one_torch_thread``).

The last line on stdout is one JSON object: ``{"images_per_s": ...,
"catalogue_images_per_s": ..., "query_images_per_s": ...}`` plus those and
the sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick preset")
    args = parser.parse_args()
    config = ImageWorldConfig.quick() if args.quick else ImageWorldConfig.small()
    world = ImageWorld(config)
    products = world.products["product_id"].to_numpy()
    repeats = 3

    catalogue_s = query_s = cpu_s = float("inf")
    n_catalogue = n_query = 0
    for attempt in range(repeats):
        cpu = time.process_time()
        start = time.perf_counter()
        catalogue = world.catalogue(products)
        catalogue_s = min(catalogue_s, time.perf_counter() - start)
        start = time.perf_counter()
        queries = world.queries(products, seed=attempt)
        query_s = min(query_s, time.perf_counter() - start)
        cpu_s = min(cpu_s, time.process_time() - cpu)
        n_catalogue, n_query = len(catalogue), len(queries)
    total = n_catalogue + n_query
    result = {
        "images_per_s": round(total / (catalogue_s + query_s)),
        "catalogue_images_per_s": round(n_catalogue / catalogue_s),
        "query_images_per_s": round(n_query / query_s),
        "images_per_cpu_s": round(total / cpu_s),
        "load_1min": round(os.getloadavg()[0], 2),
        "catalogue_images": n_catalogue,
        "query_images": n_query,
        "products": int(np.unique(products).size),
        "image_size": config.image_size,
        "best_of": repeats,
    }
    print(
        f"rendered {n_catalogue} catalogue shots in {catalogue_s:.2f} s and "
        f"{n_query} photos in {query_s:.2f} s (best of {repeats})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
