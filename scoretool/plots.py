"""Figures drawn off-screen with matplotlib (Agg), returned as image arrays.

matplotlib is imported when a figure is made, never at import time, and without pyplot, so no global
state or GUI backend is touched.
"""

from __future__ import annotations

import numpy as np


def figure(width_px: int, height_px: int, dpi: int = 100):
    """A matplotlib Figure of exactly width_px × height_px pixels on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def rgb_array(fig) -> np.ndarray:
    """The rendered figure as an (H, W, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
