"""The one render cache of a configured data directory (rendered documents by the hash of their inputs)."""

from __future__ import annotations

from pathlib import Path

from trialcoord.kernel import system_keys
from trialcoord.kernel.render.cache import RenderCache

_caches: dict[Path, object] = {}


def render_cache():
    """The render cache in the configured data directory, or None when nothing is configured."""
    settings = system_keys.settings()
    if settings is None:
        return None
    directory = Path(settings.data_dir) / "render-cache"
    if directory not in _caches:
        _caches[directory] = RenderCache(directory)
    return _caches[directory]
