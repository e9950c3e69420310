"""Optuna studies: samplers and pruners from config, storage under runs/, the search loop, summaries."""
