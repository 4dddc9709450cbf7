"""Readers for the on-disk dataset formats; each returns a list of ``VideoSample``."""
