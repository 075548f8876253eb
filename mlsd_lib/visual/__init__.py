"""Glue for the visual search case study (``casestudies/visual_search/index.md``).

Introduced in ``casestudies/visual_search/index.md``. The generic pieces
(capacity, worlds, datasets, models, index, re-ranking, evaluation) know nothing
about this case study; the modules here hold what only it needs:

* :mod:`~mlsd_lib.visual.scale`: the page's back-of-the-envelope estimate
  (:class:`~mlsd_lib.visual.scale.VisualAssumptions`,
  :func:`~mlsd_lib.visual.scale.production_estimate`) and the chapter's measurements
  tied to it.
"""
