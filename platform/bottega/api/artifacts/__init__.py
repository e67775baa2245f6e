"""Content-addressed artifact storage over fsspec (a local directory by default, any fsspec URL by configuration)."""
