"""Figures of stored runs for papers and slides (matplotlib, drawn on an Agg canvas without pyplot state):
`forest` (per-class means and intervals, docs/analysis.md) and `qualitative` (heatmaps over the radiographs)."""
