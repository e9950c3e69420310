"""Public alias for data plugins: `from tunekit.data import RawData` (the code lives in tunekit.components.data)."""

from tunekit.components.data import RawData

__all__ = ["RawData"]
