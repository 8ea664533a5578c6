"""segmentation components (registered on import)."""
