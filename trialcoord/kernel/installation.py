"""The installation: its settings, the system's keys and the render cache, built once by the composition root
(`create_app`, the command line) and handed to the use cases that sign, publish or render. Nothing here is
module state: a test, a benchmark or a second app in one process each build their own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trialcoord.kernel.config import Settings
from trialcoord.kernel.problems import NotConfigured
from trialcoord.kernel.system_keys import SystemKeys, load

if TYPE_CHECKING:  # rendering's imports (WeasyPrint, python-docx) load with the first render, not every command
    from trialcoord.kernel.render.cache import RenderCache


class Installation:
    """`settings` None: a bare installation (tests, scripts) with no data directory, registry folder or render
    cache, in UTC. The keys are read at first use (scrypt takes a fraction of a second), so an installation
    without them serves everything but signing, which answers NotConfigured."""

    def __init__(self, settings: Settings | None, keys: SystemKeys | None = None) -> None:
        self.settings = settings
        self._keys = keys
        self._cache: RenderCache | None = None

    def keys(self) -> SystemKeys:
        if self._keys is None:
            self._keys = load(self.settings)
        return self._keys

    @property
    def time_zone(self) -> str:
        """The installation's time zone: where a site names none, local times are shown in it."""
        return self.settings.time_zone if self.settings else "UTC"

    @property
    def data_dir(self) -> Path | None:
        return Path(self.settings.data_dir) if self.settings else None

    @property
    def registry_dir(self) -> Path | None:
        """This installation's own signer registry (and PAdES certificate), kept current from the database; the
        public copy is made by `trialcoord signatures publish`."""
        return self.data_dir / "signatures" if self.data_dir is not None else None

    @property
    def signatures_dir(self) -> Path | None:
        """Where the registry is published (the checkout's `signatures/` by default), shared by every
        installation of one checkout: refreshed here only while it holds this installation's registry."""
        return self.settings.signatures_dir if self.settings else None

    @property
    def checkpoint_dir(self) -> Path | None:
        """Where external audit checkpoints are written (kernel/anchors.py); None: unanchored."""
        return self.settings.checkpoint_dir if self.settings else None

    @property
    def tsa_url(self) -> str | None:
        """The RFC 3161 time-stamp authority PAdES signatures are time-stamped by (B-T, B-LT); None: B-B."""
        return self.settings.tsa_url if self.settings else None

    def tsa_roots(self) -> list[Any]:
        """The time-stamp authority's CA certificates (TRIALCOORD_TSA_CA_FILE, PEM), which make PAdES B-LT;
        none: B-T. A file that cannot be read is NotConfigured naming it, never a silent B-T."""
        path = self.settings.tsa_ca_file if self.settings else None
        if path is None:
            return []
        from cryptography import x509

        try:
            roots = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as error:
            raise NotConfigured(f"PAdES B-LT is unavailable: TRIALCOORD_TSA_CA_FILE {path}: {error}") from None
        return roots

    def render_cache(self) -> RenderCache | None:
        """Rendered documents by the hash of their inputs, in the data directory; None without one."""
        if self._cache is None and self.data_dir is not None:
            from trialcoord.kernel.render.cache import RenderCache

            self._cache = RenderCache(self.data_dir / "render-cache")
        return self._cache
