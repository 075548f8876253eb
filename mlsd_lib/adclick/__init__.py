"""Glue for the ad-click case study (``casestudies/ad_click/index.md``).

The generic pieces (capacity, worlds, models, evaluation) know nothing about
this case study; the modules here hold what only it needs.
"""
