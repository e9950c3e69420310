"""tunekit: hyperparameter search for PyTorch training, driven by one YAML file.

This package's top level imports nothing heavy: `tunekit --help` must start fast,
so torch and optuna are imported only by the modules that train or store studies.
"""

from tunekit.version import __version__  # noqa: F401 (the public name)


def load(path, *, allow_plugins=None):
    """A predictor for a trained model: `path` is a model.pt, a folder holding one, or a study folder
    (`runs/<study>`, whose best/model.pt is used). It has `.module` (the nn.Module), `predict(X)`
    (class labels as the data wrote them, or values in the target's units) and `predict_proba(X)`.

        import tunekit
        model = tunekit.load("runs/quickstart")
        labels = model.predict(X)  # X: a numpy array or a list of rows

    `allow_plugins=["pkg"]` allows a model plugin the config names (`--allow-plugin pkg`)."""
    from tunekit.predict.predictor import load as _load  # torch only when used: `tunekit --help` stays fast

    return _load(path, allow_plugins=allow_plugins)
