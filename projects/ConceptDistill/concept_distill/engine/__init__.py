"""Runner and checkpoint-loading policy."""
