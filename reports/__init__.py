"""Rendering of results. Reports read result dicts; they never run a model."""
