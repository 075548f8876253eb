"""Cold start, made measurable: a tower without content, a user with few plays.

Introduced in ``casestudies/recommender/09_interview_followups.ipynb`` (the follow-up "A
new title launches today. How does it get recommended?" and the clarifying question on
new users). Two counterfactual inputs, built from the real ones so that everything else
stays equal:

* :func:`without_item_content`: the same training examples with the item
  table emptied, so :meth:`~mlsd_lib.models.two_tower.TwoTower.from_data`
  builds an **id-only** item tower (the id vector alone through the MLP).
  Every item without a training event then reads the one "unknown item" row:
  all new titles get the same vector, and none can be told from another.
* :func:`truncated_queries`: the user tower's inputs with each history cut to
  its ``n_plays`` most recent engaged items and the history profile (genre
  mix, typical length) recomputed from what is left: the same users as they
  would look after ``n_plays`` plays, for a curve of recall against history
  length. Only the history changes; context (region, maturity limit, tenure)
  is the user's own, so ``n_plays = 0`` is a new user in an existing user's
  context.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.models.two_tower_data import EntityFeatures, TwoTowerData
from mlsd_lib.recsys.features import ModelInputs, history_profile

__all__ = ["ColdStartInputError", "truncated_queries", "without_item_content"]


class ColdStartInputError(MlsdError, ValueError):
    """Inputs a cold-start variant cannot be built from; the message says how."""


def without_item_content(data: TwoTowerData) -> TwoTowerData:
    """``data`` with an empty item table (no dense, no categorical columns).

    Train on it for an id-only item tower; score with queries passed through
    this function too, so both towers see the tables they were built for.
    """
    return replace(data, items=EntityFeatures.from_arrays(n=data.n_items))


def truncated_queries(
    queries: TwoTowerData, inputs: ModelInputs, n_plays: int
) -> TwoTowerData:
    """``queries`` with each history cut to its ``n_plays`` most recent items.

    Histories are most recent first and -1 padded
    (:func:`~mlsd_lib.recsys.features.user_queries`); the columns past
    ``n_plays`` become -1 and the dense input's profile columns are recomputed
    by :func:`~mlsd_lib.recsys.features.history_profile`. The user's own
    context columns are kept.
    """
    if isinstance(n_plays, bool) or not isinstance(n_plays, int | np.integer):
        raise ColdStartInputError(f"n_plays must be an int >= 0, got {n_plays!r}.")
    if n_plays < 0:
        raise ColdStartInputError(f"n_plays must be >= 0, got {n_plays}.")
    context = inputs.users.num_dense
    if queries.user_dense.shape[1] != context + inputs.profile_width:
        raise ColdStartInputError(
            f"the queries' dense input has {queries.user_dense.shape[1]} columns, "
            f"not {context} context + {inputs.profile_width} profile: build them "
            "with user_queries from the same inputs."
        )
    history = queries.history.copy()
    history[:, n_plays:] = -1
    dense = np.hstack(
        [queries.user_dense[:, :context], history_profile(history, inputs)]
    ).astype(np.float32)
    return replace(queries, history=history, user_dense=dense)
