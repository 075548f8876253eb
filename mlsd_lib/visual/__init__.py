"""Glue for the visual search case study (``casestudies/visual_search/index.md``).

Introduced in ``casestudies/visual_search/index.md``. The generic pieces
(capacity, worlds, datasets, models, index, re-ranking, evaluation) know nothing
about this case study; the modules here hold what only it needs:

* :mod:`~mlsd_lib.visual.scale`: the page's back-of-the-envelope estimate
  (:class:`~mlsd_lib.visual.scale.VisualAssumptions`,
  :func:`~mlsd_lib.visual.scale.production_estimate`) and the chapter's measurements
  tied to it.
* :mod:`~mlsd_lib.visual.catalogue_index`: the catalogue as search sees it: full
  vectors, image -> product -> category, an IVF-PQ (or HNSW) index carrying the embedder
  version; incremental adds; save/load.
* :mod:`~mlsd_lib.visual.search`: :class:`~mlsd_lib.visual.search.VisualSearcher`, ANN
  top 200 to 20 products (re-rank, collapse, dedup, filters) with every stage's list and
  time; batch variant.
* :mod:`~mlsd_lib.visual.availability`: the filter interface (product ids in, keep mask
  out) and an in-memory table filter.
* :mod:`~mlsd_lib.visual.fallback`: the degraded category-level answer when the index is
  unavailable.
* :mod:`~mlsd_lib.visual.events`: the market as an event log (parquet, Redis Stream).
* :mod:`~mlsd_lib.visual.product_features`: stock, price and 24 h counts in Redis.
* :mod:`~mlsd_lib.visual.stock_filter`: the Redis-backed in-stock filter.
* :mod:`~mlsd_lib.visual.oracle`: the catalogue ranked by true similarity (the
  yardstick) and the duplicate ceiling by listing id.
* :mod:`~mlsd_lib.visual.retrieval_quality`: recall@K by item and graded NDCG for
  vectors or ranked lists.
* :mod:`~mlsd_lib.visual.photo_gap`: recall along the catalogue-to-user-photo dial
  (:meth:`~mlsd_lib.worlds.images_config.QueryStyle.interpolate`).
* :mod:`~mlsd_lib.visual.offline_report`: the offline evaluation on one exam: recall by
  exact search, ANN recall, miss attribution, dedup threshold, crops against whole
  photos, graded NDCG, the index sweep.
* Serving (``POST /v1/visual/search``): :mod:`~mlsd_lib.visual.query_image` (decode,
  crop, resize the photo), :mod:`~mlsd_lib.visual.served_embedder` (the embedder as
  served: pixels in, a unit vector out), :mod:`~mlsd_lib.visual.regions` (precomputed
  region embeddings), :mod:`~mlsd_lib.visual.pipeline` (one request stage by stage, or a
  degraded page), :mod:`~mlsd_lib.visual.gateway` (the route on the generic gateway),
  :mod:`~mlsd_lib.visual.release` (the embedder and the index it built, one version),
  :mod:`~mlsd_lib.visual.bundle` (what a server loads from disk),
  :mod:`~mlsd_lib.visual.quick_release` (a seeded release in one call),
  :mod:`~mlsd_lib.visual.recipes` (which world, embedder and index the chapters use),
  :mod:`~mlsd_lib.visual.search_server` (the app under uvicorn),
  :mod:`~mlsd_lib.visual.search_load` and :mod:`~mlsd_lib.visual.search_traffic` (load
  and background traffic with every answer kept).
* :mod:`~mlsd_lib.visual.training_images`: what the embedder may learn from: the
  training products' catalogue images and photos, never a test one.
* Online evaluation: :mod:`~mlsd_lib.visual.online_test` (two arms on every market query
  with common random numbers; split and paired A/B on clicks and saves per query,
  guardrails, the truth per arm) and :mod:`~mlsd_lib.visual.click_reranker` (a click
  re-ranker over the visual page: 24 h CTR point in time, price, stock; visual distance
  as a constraint).
* Monitoring and retraining: :mod:`~mlsd_lib.visual.monitors` (query-embedding drift,
  top-1 category mix, top-1 distance, empty pages per window, alerts and detection
  delays), :mod:`~mlsd_lib.visual.shift_timeline` (traffic with a camera shift and a new
  category injected, searched with the served code),
  :mod:`~mlsd_lib.visual.release_swap` (embedder and index swapped together under load;
  the version check of answers).
"""
