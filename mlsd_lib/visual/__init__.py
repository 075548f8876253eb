"""Glue for the visual search case study (``casestudies/visual_search/index.md``).

Introduced in ``casestudies/visual_search/index.md``. The generic pieces
(capacity, worlds, datasets, models, index, re-ranking, evaluation) know nothing
about this case study; the modules here hold what only it needs.
"""
