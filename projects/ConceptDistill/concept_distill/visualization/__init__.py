"""Figures: point-image pair overlays (matplotlib is imported only by the plotting calls)."""
