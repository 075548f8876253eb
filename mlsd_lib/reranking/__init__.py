"""Re-ranking: what happens to the ranker's list before a page is shown.

Introduced in ``casestudies/recommender/index.md``, step 5 of a feed request
("filter watched / region / maturity, diversify, return 20"). The ranker scores
each candidate on its own; a page is a list, and its business rules and
diversity are properties of the list, so they are enforced after ranking, in
this order:

* :mod:`~mlsd_lib.reranking.filters`: drop candidates the user must not see
  (already watched, unavailable in their region, above their maturity setting)
  and report each filter's survival rate, the number retrieval must over-fetch
  by.
* :mod:`~mlsd_lib.reranking.diversity`: greedy maximal marginal relevance over
  the survivors, with hard rules (at most 3 per series, at least 4 genres).
* :mod:`~mlsd_lib.reranking.exploration`: reserve a slot for a new item chosen
  by Thompson sampling, and log its selection probability for off-policy
  evaluation.
* :mod:`~mlsd_lib.reranking.batch_exploration`: the same exploration slots for a
  batch of feeds at once, with exact propensities.
* :mod:`~mlsd_lib.reranking.product_collapse`: from ANN image hits to distinct products:
  exact re-rank on stored vectors, images collapsed into products (best image each),
  near-duplicate removal with each drop's reason.
* :mod:`~mlsd_lib.reranking.bandits`: greedy, epsilon-greedy, Thompson and UCB scores
  over Beta click-rate posteriors.
* :mod:`~mlsd_lib.reranking.bandit_stream`: a request stream where new arms arrive;
  regret against an oracle.

Everything here is generic numpy over arrays the caller supplies (candidate
ids, scores, embeddings, group and genre labels): it knows nothing about videos,
products or which case study calls it.
"""

from mlsd_lib.reranking.diversity import (
    DiversePage,
    DiversityInputError,
    DiversityRules,
    diversify,
    mean_pairwise_similarity,
)
from mlsd_lib.reranking.exploration import (
    ExplorationConfig,
    ExplorationInputError,
    ExploredSlate,
    explore,
    selection_probabilities,
)
from mlsd_lib.reranking.filters import (
    FilteredCandidates,
    FilterInputError,
    FilterReport,
    apply_filters,
    eligible,
    not_seen,
    rating_at_most,
)

__all__ = [
    "DiversePage",
    "DiversityInputError",
    "DiversityRules",
    "ExplorationConfig",
    "ExplorationInputError",
    "ExploredSlate",
    "FilterInputError",
    "FilterReport",
    "FilteredCandidates",
    "apply_filters",
    "diversify",
    "eligible",
    "explore",
    "mean_pairwise_similarity",
    "not_seen",
    "rating_at_most",
    "selection_probabilities",
]
