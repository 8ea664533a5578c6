"""hooks components (registered on import)."""
