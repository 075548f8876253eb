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
"""
