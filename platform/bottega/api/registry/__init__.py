"""The model DB: models, immutable versions, artifacts, aliases."""
