"""ops components (registered on import)."""
