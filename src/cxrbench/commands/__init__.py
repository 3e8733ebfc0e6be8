"""Subcommands of `cxrbench` that live in their own modules (registered in `cxrbench.cli`).

Each module defines one click command (or group) and imports heavy modules inside it, so
`cxrbench --help` never imports torch.
"""
