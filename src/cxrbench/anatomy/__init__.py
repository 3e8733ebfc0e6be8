"""Anatomy: the vocabulary, location extraction from report text and the location table (docs/anatomy.md)."""
