"""Inference backends behind one small contract (see ``backends.base``)."""
