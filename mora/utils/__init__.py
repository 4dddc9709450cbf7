"""Small shared helpers: atomic file writes, safe path joins, logging."""
