"""The tiny shared kernel of Bottega: errors, ids, settings base and shared value types.

Everything here is light (standard library and pydantic only) because the SDK imports it.
"""

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """The installed distribution's version, or "0+unknown" when running from an uninstalled tree."""
    try:
        return version("bottega")
    except PackageNotFoundError:
        return "0+unknown"
