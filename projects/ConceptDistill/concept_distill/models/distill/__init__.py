"""distill components (registered on import)."""
