"""deepleaps: a PyTorch training framework whose procedure is a program you can patch while it runs."""

__version__ = "0.1.0"
