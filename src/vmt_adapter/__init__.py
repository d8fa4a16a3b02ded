"""VMT-Adapter: once-for-all multi-task adapters on frozen Swin Transformers."""

__version__ = "0.1.0"
