"""Dataset adapters. Each yields `cxrbench.types.Sample`s lazily and declares its classes."""
