"""Helpers for tests and benchmarks: models built here, since none can be downloaded."""
