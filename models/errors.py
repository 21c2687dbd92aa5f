"""Errors of the models package.

``cascade`` maps ``ImageError`` to its own 4xx errors (models must not import cascade), so each
message here is written for the person who sent the image: what is wrong and what to send.
"""

from __future__ import annotations


class ModelsError(Exception):
    """Base of every error this package raises on purpose."""


class ImageError(ModelsError):
    """The bytes are not an image we can score. ``code`` is a stable machine-readable reason."""

    code = "invalid_image"


class ImageDecodeError(ImageError):
    """A recognised format whose data is empty, corrupt or truncated."""

    code = "image_decode_error"


class ImageTooLarge(ImageError):
    """More pixels than allowed (decompression-bomb guard), checked before decoding."""

    code = "image_too_large"


class UnsupportedImage(ImageError):
    """Not a raster image format we accept (e.g. SVG, HTML, PDF, unknown bytes)."""

    code = "unsupported_image"


class ModelArtifactError(ModelsError):
    """A model directory is missing a file or holds an inconsistent one."""


class ModelImportError(ModelArtifactError):
    """An external model cannot be imported as a stage (see ``models.importer``)."""


class EngineUnavailable(ModelsError):
    """The requested engine cannot run here (library missing, no GPU, file not exported)."""


class ModelInitError(ModelsError):
    """Initial weights could not be loaded (pretrained download, checkpoint file)."""


class ExportError(ModelsError):
    """An exported graph does not reproduce the PyTorch model within tolerance."""
