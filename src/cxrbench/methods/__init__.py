"""Model-based grounding methods (torch imported lazily, on first use)."""
