"""The package's version: one definition, imported by every module that records it."""

__version__ = "0.1.0"
