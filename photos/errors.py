"""The one error a photo can cause: its message says what to change in the photo or the request."""

from __future__ import annotations


class PhotoError(ValueError):
    """A photo that cannot be measured; str(error) tells the user what to fix."""
