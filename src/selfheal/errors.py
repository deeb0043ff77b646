"""The few exception types the controller package raises across module boundaries."""


class SelfhealError(Exception):
    """Base class: an expected failure with a message meant for the operator."""


class ConfigError(SelfhealError):
    """Bad input (a policy file, an option, a payload). The message names the bad field."""

    def __init__(self, message: str, path: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)
