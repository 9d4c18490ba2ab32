"""Typed exceptions. Code raises these; only the CLI turns them into messages and exit codes."""


class HarnessError(Exception):
    """Base class for every error the harness raises on purpose."""


class InputError(HarnessError, ValueError):
    """The user (or a caller) handed us something malformed. The CLI exits 2."""


class DeviceUnavailableError(InputError):
    """The requested device does not exist on this machine."""


class CheckpointError(HarnessError):
    """A checkpoint is missing, tampered with, or for another model config."""


class BackendUnavailableError(HarnessError):
    """A backend cannot run for this device/dtype; the message says why."""


class BackendError(HarnessError):
    """A backend failed while preparing or running."""
