"""Progress bars that suit where the code runs.

Introduced in ``casestudies/ad_click/03_models.ipynb``.

``tqdm.auto`` draws a widget in Jupyter, but only when ``ipywidgets`` is
installed; without it, it warns ("IProgress not found") in every notebook that
imports it. This picks the widget bar when it can be drawn and the text bar
otherwise, so no reader sees that warning.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("ipywidgets") is not None:
    from tqdm.auto import tqdm
else:  # text bars, in a terminal and in a notebook alike
    from tqdm.std import tqdm

__all__ = ["tqdm"]
