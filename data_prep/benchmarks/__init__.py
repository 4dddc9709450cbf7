"""Benchmarks of the data pipeline (run as modules: python -m data_prep.benchmarks.<name>)."""
