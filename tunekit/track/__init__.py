"""Experiment tracking (MLflow, TensorBoard): what a search or a train run tells a tracker, and how a tracker's failure never fails a trial."""
