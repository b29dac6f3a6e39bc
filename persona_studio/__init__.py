"""persona-studio: chat logs in, living personas out."""

__version__ = "0.1.0"
