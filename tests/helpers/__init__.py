"""Shared test helpers (not test modules): tiny datasets, the Snakemake runner, tables."""
