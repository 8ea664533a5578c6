"""datasets components (registered on import)."""
