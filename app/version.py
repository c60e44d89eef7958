"""The version this code calls itself (written into every archive's ``app_info.json``)."""

__version__ = "1.0.0"
