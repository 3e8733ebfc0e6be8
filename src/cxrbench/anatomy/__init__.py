"""Anatomy vocabulary (SPEC 4): pathologies, locations and the prompt format."""
