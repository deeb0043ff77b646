"""selfheal: close the loop alert -> decide -> heal -> verify -> record -> learn."""

__version__ = "0.1.0"
