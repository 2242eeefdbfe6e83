"""User-facing errors: each carries one line that says what went wrong and what to do about it."""


class ObsRvmError(Exception):
    """An expected failure with an actionable message (printed as-is by the CLI, shown as-is in OBS)."""


class ModelError(ObsRvmError):
    """The model is missing, corrupt, of the wrong kind, or failed verification."""


class SetupError(ObsRvmError):
    """The installation cannot be used or changed: OBS or its Python missing, no permission, OBS still running."""


class InputError(ObsRvmError):
    """An input (video, image, background, output path) cannot be used."""


class BackendError(ObsRvmError):
    """The requested inference backend cannot run here."""


class DeviceError(ObsRvmError):
    """A camera, virtual camera or display is missing, busy, or not the kind of device asked for."""


class Cancelled(ObsRvmError):
    """The caller stopped (a filter removed, OBS exiting) while a model preparation was in flight."""
