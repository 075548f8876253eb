"""The folds a processor process can run, by the name its command line takes.

Introduced in ``notebooks/streaming_features.ipynb``. A processor started as a
process (``python -m mlsd_lib.features.stream_processor --fold history``, or
:func:`~mlsd_lib.features.stream_launcher.start_processor` with
``fold="history"``) cannot receive a fold object, only a name and a few numbers:
:func:`fold_named` turns those into the fold, and the launcher calls it before
starting anything, so a bad name or length fails in the caller, with the
reason, not in a child process's stderr.

* ``windowed``: the ads example's windowed counts
  (:func:`~mlsd_lib.features.windows.ads_aggregations`).
* ``history``: the example history over interaction events
  (:func:`~mlsd_lib.features.history_fold.interaction_history`).
"""

from __future__ import annotations

from mlsd_lib.features.history_fold import (
    DEFAULT_CATEGORIES,
    DEFAULT_HISTORY_LENGTH,
    interaction_history,
)
from mlsd_lib.features.interaction_events import INTERACTION_STREAM
from mlsd_lib.features.stream_folds import StreamFold
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.features.windowed_fold import WindowedCountFold
from mlsd_lib.features.windows import ADS_STREAM, ads_aggregations

__all__ = ["FOLD_NAMES", "UnknownFold", "fold_named"]

#: The names :func:`fold_named` knows.
FOLD_NAMES = ("windowed", "history")


class UnknownFold(FeatureStoreError, KeyError):
    """A fold name that is not in :data:`FOLD_NAMES`."""

    def __str__(self) -> str:
        return str(self.args[0])


def fold_named(
    name: str,
    stream: str | None = None,
    *,
    history_length: int | None = None,
    categories: int | None = None,
) -> StreamFold:
    """The fold called ``name``, for ``stream`` (default: the example's stream).

    ``history_length`` and ``categories`` configure the history fold (defaults
    50 and 12) and are refused for any other.
    """
    if name not in FOLD_NAMES:
        raise UnknownFold(
            f"unknown fold {name!r}: choose one of {list(FOLD_NAMES)} "
            "(--fold, or fold= when starting a processor)."
        )
    if name == "windowed":
        given = [
            option
            for option, value in (
                ("history_length", history_length),
                ("categories", categories),
            )
            if value is not None
        ]
        if given:
            raise FeatureStoreError(
                f"{given} configure the history fold, not the windowed one; drop "
                "them or choose fold 'history'."
            )
        stream = ADS_STREAM if stream is None else stream
        return WindowedCountFold(ads_aggregations(stream), stream=stream)
    return interaction_history(
        INTERACTION_STREAM if stream is None else stream,
        length=DEFAULT_HISTORY_LENGTH if history_length is None else history_length,
        n_categories=DEFAULT_CATEGORIES if categories is None else categories,
    )
