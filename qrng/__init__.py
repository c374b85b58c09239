"""qrng-ceremony entropy core: sources, SP 800-90B health tests, extractors, SP 800-90A DRBGs."""

__all__ = ["__version__"]
__version__ = "0.1.0"
