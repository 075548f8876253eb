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
* ``latest``: an entity's latest values and 24 h counts over entity events
  (:func:`~mlsd_lib.features.latest_fold.entity_state`), its value types,
  counted types and name given as options (``value_types="stock,price"``).
"""

from __future__ import annotations

from collections.abc import Sequence

from mlsd_lib.features.entity_events import ENTITY_STREAM
from mlsd_lib.features.history_fold import (
    DEFAULT_CATEGORIES,
    DEFAULT_HISTORY_LENGTH,
    interaction_history,
)
from mlsd_lib.features.interaction_events import INTERACTION_STREAM
from mlsd_lib.features.latest_fold import entity_state
from mlsd_lib.features.stream_folds import StreamFold
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.features.windowed_fold import WindowedCountFold
from mlsd_lib.features.windows import ADS_STREAM, ads_aggregations

__all__ = ["FOLD_NAMES", "UnknownFold", "fold_named"]

#: The names :func:`fold_named` knows.
FOLD_NAMES = ("windowed", "history", "latest")


class UnknownFold(FeatureStoreError, KeyError):
    """A fold name that is not in :data:`FOLD_NAMES`."""

    def __str__(self) -> str:
        return str(self.args[0])


def _types(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A list of event types given as ``"a,b"`` (a command line) or a sequence."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return tuple(value)


def fold_named(
    name: str,
    stream: str | None = None,
    *,
    history_length: int | None = None,
    categories: int | None = None,
    value_types: str | Sequence[str] | None = None,
    counted_types: str | Sequence[str] | None = None,
    state_name: str | None = None,
) -> StreamFold:
    """The fold called ``name``, for ``stream`` (default: the example's stream).

    ``history_length`` and ``categories`` configure the history fold (defaults
    50 and 12); ``value_types`` (required), ``counted_types`` and
    ``state_name`` (default ``"entity"``) the latest-value fold, as sequences or
    comma-separated text. Each fold refuses the others' options.
    """
    if name not in FOLD_NAMES:
        raise UnknownFold(
            f"unknown fold {name!r}: choose one of {list(FOLD_NAMES)} "
            "(--fold, or fold= when starting a processor)."
        )
    options = {
        "history": [
            ("history_length", history_length),
            ("categories", categories),
        ],
        "latest": [
            ("value_types", value_types),
            ("counted_types", counted_types),
            ("state_name", state_name),
        ],
    }
    for owner, given in options.items():
        foreign = [option for option, value in given if value is not None]
        if foreign and owner != name:
            raise FeatureStoreError(
                f"{foreign} configure the {owner} fold, not the {name} one; drop "
                f"them or choose fold {owner!r}."
            )
    if name == "windowed":
        stream = ADS_STREAM if stream is None else stream
        return WindowedCountFold(ads_aggregations(stream), stream=stream)
    if name == "latest":
        if not _types(value_types):
            raise FeatureStoreError(
                "the latest fold needs value_types, the event types whose newest "
                "value it keeps (e.g. --value-types stock,price)."
            )
        return entity_state(
            ENTITY_STREAM if stream is None else stream,
            name="entity" if state_name is None else state_name,
            value_types=_types(value_types),
            counted_types=_types(counted_types),
        )
    return interaction_history(
        INTERACTION_STREAM if stream is None else stream,
        length=DEFAULT_HISTORY_LENGTH if history_length is None else history_length,
        n_categories=DEFAULT_CATEGORIES if categories is None else categories,
    )
