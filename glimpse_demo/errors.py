"""Errors a user can cause. Views show their message; nothing else needs a traceback."""


class GlimpseDemoError(Exception):
    """Base for mistakes the user can fix (bad input, wrong folder, unsupported option)."""


class InputError(GlimpseDemoError):
    """The image or the question cannot be used."""


class CheckpointError(GlimpseDemoError):
    """A model or modules folder is missing, malformed, or does not fit the base model."""


class DeviceError(GlimpseDemoError):
    """The requested device or quantisation is not available here."""


class OutOfMemory(GlimpseDemoError):
    """The run did not fit in memory; the engine has released what it held."""
