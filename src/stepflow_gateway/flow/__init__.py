"""Flow files: models, loading, normalisation, expressions and JSON paths."""
