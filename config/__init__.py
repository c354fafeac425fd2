"""Configuration from the environment, read once, in one place: `get_settings()` (config/settings.py)."""

from config.settings import UCI_ARCHIVE_URL, Settings, get_settings

__all__ = ["UCI_ARCHIVE_URL", "Settings", "get_settings"]
