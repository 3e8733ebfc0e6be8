"""Leaderboard tables built from stored runs only."""
