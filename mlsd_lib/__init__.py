"""The tested library behind *ML System Design, Runnable*.

Introduced in ``book/intro.md``.

Notebooks show the key lines; the code that survives lives here, with unit tests.
Start with :mod:`mlsd_lib.config` (where the real components are) and
:func:`mlsd_lib.redis_backend.get_redis` (the online store every chapter uses).
Layers run one way, from worlds and data sets to serving; evaluation and
monitoring are pure functions:

* :mod:`~mlsd_lib.config`, :mod:`~mlsd_lib.environment`: settings from the
  environment, and the versions a notebook reports;
* :mod:`~mlsd_lib.redis_backend`, :mod:`~mlsd_lib.net`,
  :mod:`~mlsd_lib.processes`, :mod:`~mlsd_lib.progress`: the real servers the
  book starts on loopback, and the progress bars;
* :mod:`~mlsd_lib.redis_cluster`, :mod:`~mlsd_lib.cluster_routing`,
  :mod:`~mlsd_lib.cluster_drill`: a Redis Cluster on loopback, one request per
  node to it, and the failover drill;
* :mod:`~mlsd_lib.cluster_measure`, :mod:`~mlsd_lib.cluster_drill_timeline`: the
  cluster's read cost measured side by side with one node, and a failover drill's
  timeline;
* :mod:`~mlsd_lib.batch`: batch jobs on Dask (point-in-time join, windowed counts,
  catalogue embedding) partitioned by entity, and what they cost against pandas;
* :mod:`~mlsd_lib.scale_out_plan`: from what one machine measured to how many
  Redis shards, batch workers and index shards production needs;
* :mod:`~mlsd_lib.validation`: the checks of a reader's parameters (name, allowed
  range, value);
* :mod:`~mlsd_lib.errors`: the one root of the library's errors;
* :mod:`~mlsd_lib.worlds`: simulators with known ground truth;
* :mod:`~mlsd_lib.datasets`: the shapes models consume, and real-format loaders;
* :mod:`~mlsd_lib.features`: feature views, offline and online stores, streams;
* :mod:`~mlsd_lib.models`: the models and the one training loop;
* :mod:`~mlsd_lib.index`: approximate nearest-neighbour search on faiss (Flat,
  IVF, HNSW, IVF-PQ), versioned and sharded;
* :mod:`~mlsd_lib.reranking`: filters, diversity and exploration on a ranked list;
* :mod:`~mlsd_lib.serving`: export, registry, model servers, the gateway;
* :mod:`~mlsd_lib.evaluation`, :mod:`~mlsd_lib.monitoring`: metrics, A/B
  tests, drift;
* :mod:`~mlsd_lib.capacity`: back-of-the-envelope estimates;
  :mod:`~mlsd_lib.capacity_worked`, :mod:`~mlsd_lib.capacity_sensitivity`,
  :mod:`~mlsd_lib.capacity_measured`: the framework's worked estimates, a tornado,
  a measured per-core rate;
* :mod:`~mlsd_lib.adclick`, :mod:`~mlsd_lib.recsys`, :mod:`~mlsd_lib.visual`: each case
  study's glue.
"""

__version__ = "0.1.0"
