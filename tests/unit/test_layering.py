"""The domain core stays pure: importing it loads no framework, database, rendering or crypto library."""

import subprocess
import sys

FORBIDDEN = ("litestar", "piccolo", "weasyprint", "docx", "cryptography", "argon2", "yaml", "holidays", "asyncpg")


def test_domain_imports_no_adapter_library():
    code = (
        "import sys, pkgutil, importlib, trialcoord.domain as d\n"
        "for m in pkgutil.iter_modules(d.__path__): importlib.import_module('trialcoord.domain.' + m.name)\n"
        f"print(','.join(sorted(n for n in {FORBIDDEN!r} if n in sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_the_check_itself_would_notice_a_forbidden_import():
    code = "import sys, yaml; print('yaml' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"
