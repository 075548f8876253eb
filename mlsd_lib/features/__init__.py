"""The feature store: feature views declared once, served offline and online.

Introduced in ``notebooks/feature_store.ipynb`` and
``notebooks/streaming_features.ipynb`` (the histories in
``casestudies/recommender/index.md``).

* :mod:`~mlsd_lib.features.views`: the declarations (what a feature is).
* :mod:`~mlsd_lib.features.validation`: rows checked against a view before any write.
* :mod:`~mlsd_lib.features.offline`: event tables on disk and point-in-time joins
  (training data without leakage).
* :mod:`~mlsd_lib.features.records`: the byte layout and key names shared by the
  online store and the stream processor.
* :mod:`~mlsd_lib.features.online`: the Redis online store (materialization with
  an atomic generation swap, one-round-trip reads); on a Redis Cluster,
  :mod:`~mlsd_lib.features.cluster_online` (keys sharded by hash tag).
* :mod:`~mlsd_lib.features.windows`: windowed counts, defined once for the stream
  processor and for offline training data.
* :mod:`~mlsd_lib.features.event_stream`: the event schema and the producer
  (Redis Streams).
* :mod:`~mlsd_lib.features.interaction_events`: the user-item interaction event
  schema and its producer (the recommender's stream).
* :mod:`~mlsd_lib.features.stream_processor`: the consumer-group processor, run as
  ``python -m mlsd_lib.features.stream_processor``; its extra keys in
  :mod:`~mlsd_lib.features.stream_keys`, its process in
  :mod:`~mlsd_lib.features.stream_launcher`, and how fresh its features are in
  :mod:`~mlsd_lib.features.stream_freshness`.
* :mod:`~mlsd_lib.features.stream_folds`: what an event does to the store, the
  processor's one extension point; the folds:
  :mod:`~mlsd_lib.features.windowed_fold` (windowed counts) and
  :mod:`~mlsd_lib.features.history_fold` (per-user last items, category counts,
  activity), with the names a processor process takes in
  :mod:`~mlsd_lib.features.fold_catalog`.
* :mod:`~mlsd_lib.features.live_processor`: a processor that keeps folding while a
  service runs (a process on real Redis, a thread on fakeredis).
* :mod:`~mlsd_lib.features.histories`: histories read online in one round trip,
  and the same values computed offline at any time, without leakage.
* :mod:`~mlsd_lib.features.read_strategies`: the per-feature layouts the packed
  one is measured against.
* :mod:`~mlsd_lib.features.examples`: a small seeded ads example for the notebooks
  and the benchmark.
* :mod:`~mlsd_lib.features.entity_events`: entity events (state changes and
  occurrences).
* :mod:`~mlsd_lib.features.latest_fold`: newest value per event type, plus counts.
* :mod:`~mlsd_lib.features.event_log_files`: event logs as parquet by day and hour.
* :mod:`~mlsd_lib.features.hash_collisions`: how many ids share a bucket when a field is
  hashed, measured and by formula.
* :mod:`~mlsd_lib.features.stream_layout`: where the stream processor's keys live, on
  one Redis or in a Redis Cluster's shards.
"""
