"""threedetr components (registered on import)."""
