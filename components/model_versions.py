"""Version directories of a serving directory, named as TF Serving names them.

A version is a directory whose name is a whole number in ASCII digits (``1718000000``).
``str.isdigit()`` is not that test: it accepts ``'²'`` or ``'٣'``, which ``int()`` then refuses
or reads as another number. Every place that reads a version name (the Pusher, the model
server's poll, its REST router) uses :func:`version_number`.
"""
import re
from typing import Optional

_VERSION = re.compile(r'[0-9]+')


def version_number(name: str) -> Optional[int]:
    """The version a directory or URL segment names, or None if it names none."""
    return int(name) if _VERSION.fullmatch(name) else None
