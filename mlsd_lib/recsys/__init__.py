"""Glue for the recommender case study (``casestudies/recommender/index.md``).

Introduced in ``casestudies/recommender/index.md``. The generic pieces
(capacity, worlds, models, index, evaluation) know nothing about this case
study; the modules here hold what only it needs:

* :mod:`~mlsd_lib.recsys.scale`: the production requirements of the case
  study's page as a :mod:`mlsd_lib.capacity` estimate, with the rows only a
  recommender has (candidates ranked, item features in memory, play log,
  embedding tables, Flat / HNSW / IVF-PQ index sizes, ranker replicas).
* :mod:`~mlsd_lib.recsys.world_profile`: what a simulated log says: rates,
  the position curve against the world's true one, popularity concentration,
  clickbait and watch minutes.
* :mod:`~mlsd_lib.recsys.arms`: several feed policies run on forks of one
  world, so they face the same users and the same random numbers.
* :mod:`~mlsd_lib.recsys.ceilings`: held-out plays, reference rankings
  (oracle, popularity, random, "shown before") and the recall and NDCG each
  reaches, against logged plays and against the truth.
* :mod:`~mlsd_lib.recsys.events`: the world's impression log as interaction
  events (sessions, impressions, plays, engaged plays; stable ids), parquet
  files by day and hour, and the Redis Stream the history fold reads.
* :mod:`~mlsd_lib.recsys.training_rows`: point-in-time training rows for
  retrieval and ranking from the streamed user state, and the leakage test.
* Serving the feed (``POST /v1/recs/feed``):
  :mod:`~mlsd_lib.recsys.feed_features` (the user tower's and the ranker's
  inputs from one Redis read), :mod:`~mlsd_lib.recsys.feed_catalogue` (the
  item table in memory, "continue watching"), :mod:`~mlsd_lib.recsys.feed_tables`
  (trending, popular-in-region and the exploration pool, precomputed),
  :mod:`~mlsd_lib.recsys.feed` (the five stages of one request, and its
  degraded feed), :mod:`~mlsd_lib.recsys.serving` (towers, ranker and index
  registered and deployed as one release), :mod:`~mlsd_lib.recsys.gateway`
  (the route on the generic gateway, its degraded answers and impression log),
  :mod:`~mlsd_lib.recsys.feed_bundle` (what a feed server loads from disk),
  :mod:`~mlsd_lib.recsys.feed_server` (``python -m
  mlsd_lib.recsys.feed_server``: the route under uvicorn, a process of its own)
  and :mod:`~mlsd_lib.recsys.quick_release` (a small seeded release for tests
  and the benchmark); measuring the served feed:
  :mod:`~mlsd_lib.recsys.feed_load` (bodies, stage tables, sources, filter
  survival), :mod:`~mlsd_lib.recsys.feed_freshness` (a play to the next feed),
  :mod:`~mlsd_lib.recsys.feed_traffic` (labelled background traffic) and
  :mod:`~mlsd_lib.recsys.feed_plots` (stages against the budget).
* Models and their offline evaluation (step 4 and 5):
  :mod:`~mlsd_lib.recsys.features` (what the models may see: the world's or a
  MovieLens file's observable tables as tower and ranker inputs, point-in-time
  histories and item statistics), :mod:`~mlsd_lib.recsys.recipes` (most
  popular, ALS, the three two-tower variants and the two-head ranker as frozen
  recipes, shared with ``benchmarks/recsys_quality.py``) and
  :mod:`~mlsd_lib.recsys.evaluation` (the time split; recall against held-out
  plays and against the true top K; ANN recall; NDCG@20 against the oracle;
  calibration; slices; what ranking by clicks costs).
* Online evaluation (step 5): :mod:`~mlsd_lib.recsys.model_policies` (trained
  models as the world's feed policy, slot mixtures, frozen policy copies) and
  :mod:`~mlsd_lib.recsys.online_evaluation` (the A/B test paired and split, users
  needed; replayed feeds and target probabilities for off-policy estimates; true
  values on forks).
* Monitoring and retraining (step 7): :mod:`~mlsd_lib.recsys.served_policy` (a
  deployed release serving the world's feeds), :mod:`~mlsd_lib.recsys.monitors`
  (daily drift, unindexed catalogue, recall decay, concentration, with alert
  rules), :mod:`~mlsd_lib.recsys.monitor_plots` (the monitor panel),
  :mod:`~mlsd_lib.recsys.release_checks` (what a release must pass before it
  serves) and :mod:`~mlsd_lib.recsys.release_swap` (the next release loaded
  beside the old, checked, warmed up and swapped in).
* Feedback loops: :mod:`~mlsd_lib.recsys.loop_policy` (a two-tower feed
  retrained on its own plays) and :mod:`~mlsd_lib.recsys.feedback_loop` (weeks
  of arms on forks: exposure, engagement, recall against the truth, a control
  outside the loop).
* The interview follow-ups: :mod:`~mlsd_lib.recsys.precompute` (online against
  nightly feeds), :mod:`~mlsd_lib.recsys.cold_start` (id-only tower, truncated
  histories), :mod:`~mlsd_lib.recsys.objective_arms` (rankers per objective run
  as arms), :mod:`~mlsd_lib.recsys.diversity_sweep` (MMR λ swept against NDCG
  under the truth).
"""
