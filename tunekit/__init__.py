"""tunekit: hyperparameter search for PyTorch training, driven by one YAML file.

This package's top level imports nothing heavy: `tunekit --help` must start fast,
so torch and optuna are imported only by the modules that train or store studies.
"""

__version__ = "0.1.0"
