"""matplotlib for the reports, imported on first use only (so no command pays for it unless it writes a plot)."""

from __future__ import annotations

import base64
import functools
import io
from typing import Any


@functools.cache
def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG ``<img>`` tag; closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    pyplot().close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'
