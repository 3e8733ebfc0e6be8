"""Fixtures in the real on-disk formats of the credentialed datasets, for tests and for trying cxrbench
without access: they are written with the same columns, file layout and encodings as the releases."""
