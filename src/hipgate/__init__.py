"""hipgate: provision and prove compliant the medical-insurance front-end server (前置机)."""

__version__ = "0.1.0"
