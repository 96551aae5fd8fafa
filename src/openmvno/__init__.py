"""OpenMVNO: the back office of a prepaid mobile operator."""

__version__ = "0.1.0"
__all__ = ["__version__"]
