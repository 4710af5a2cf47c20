"""Models: what is installed (and, later, the catalog, Hub search and downloads)."""
