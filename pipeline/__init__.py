"""The pipeline definition, its typed config, and running it."""
