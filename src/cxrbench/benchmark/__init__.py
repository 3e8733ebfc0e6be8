"""The shared scorer: protocol (resize, pad, normalise), metrics, bootstrap, runner and stored results."""
