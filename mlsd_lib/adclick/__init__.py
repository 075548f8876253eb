"""The ad-click case study's own glue: what is specific to ads, not to the tools.

Introduced in ``casestudies/ad_click``. The generic pieces (feature store, models,
serving, evaluation, monitoring) know nothing about ads; this package wires them
to the synthetic ads world (:mod:`mlsd_lib.worlds.ads`):

* :mod:`~mlsd_lib.adclick.features`: the case study's feature views, their
  event tables from the world's impression log, and training data from
  point-in-time joins.
"""
