"""Errors raised on bad user input; the CLI prints their message as one line."""


class ArchError(ValueError):
    """An architecture string that is not a member of the search space."""


class ExportError(ValueError):
    """A model that cannot be exported, or an ONNX file that cannot be used as given."""
