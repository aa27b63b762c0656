"""The fonts every PDF trialcoord renders uses, shipped as Python packages (no system fonts, no root):

- Noto Sans (`fontpkg-noto-sans`): Latin, Greek, Cyrillic; a variable font, instanced per weight by WeasyPrint;
- Noto Sans Arabic (`fontpkg-noto-sans-arabic`): Arabic; variable too;
- Noto Sans CJK (`cvttf-notosanscjk-regular`): Japanese (and Chinese, Korean); the OTF carries every region's
  forms and picks the Japanese ones (`locl`) for text in `lang="ja"`; one weight, declared for 400 and 700 too
  so that bold matches a declared face on every machine (no synthetic bold from the system's fontconfig
  rules): bold Japanese text comes out regular.

`css()` is the `@font-face` CSS each PDF template includes, with file URLs to the installed packages' files;
`FONT_STACK` is the font-family list its text uses, Noto Sans first so that Latin-only documents never lay
out a glyph from (nor embed) the CJK font. The families carry names of their own, so a system font of the same
name can never stand in for them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from markupsafe import Markup

from trialcoord.kernel.problems import NotConfigured


@dataclass(frozen=True, slots=True)
class Face:
    family: str  # the name the templates use
    package: str  # the distribution that ships it (a runtime requirement)
    module: str
    file: str  # inside the module's folder
    weights: tuple[int, ...]  # one @font-face per weight: WeasyPrint takes no weight range
    style: str = "normal"


SANS, ARABIC, CJK = "TC Noto Sans", "TC Noto Sans Arabic", "TC Noto Sans CJK"
FACES = (
    Face(SANS, "fontpkg-noto-sans", "fontpkg_noto_sans", "files/NotoSans[wdth,wght].ttf", (400, 700)),
    Face(SANS, "fontpkg-noto-sans", "fontpkg_noto_sans", "files/NotoSans-Italic[wdth,wght].ttf", (400, 700), "italic"),
    Face(
        ARABIC,
        "fontpkg-noto-sans-arabic",
        "fontpkg_noto_sans_arabic",
        "files/NotoSansArabic[wdth,wght].ttf",
        (400, 700),
    ),
    Face(CJK, "cvttf-notosanscjk-regular", "cvttf_NotoSansCJK_Regular", "NotoSansCJKtc-Regular.otf", (400, 700)),
)
FONT_STACK = f"'{SANS}', '{ARABIC}', '{CJK}'"  # single quotes: it goes into SVG attributes too


def path(face: Face) -> Path:
    try:
        found = Path(str(resources.files(face.module).joinpath(face.file)))
    except ModuleNotFoundError:
        raise NotConfigured(f"the font package {face.package} is not installed (pip install {face.package})") from None
    if not found.is_file():
        raise NotConfigured(f"{face.package} has no {face.file}: reinstall it")
    return found


@functools.cache
def font_faces() -> str:
    """The @font-face rules of the shipped fonts, for a template's <style>."""
    rules = []
    for face in FACES:
        url = path(face).as_uri()
        for weight in face.weights:
            rules.append(
                f'@font-face {{ font-family: "{face.family}"; src: url("{url}"); '
                f"font-weight: {weight}; font-style: {face.style}; }}"
            )
    return "\n".join(rules)


@functools.cache
def css() -> Markup:
    """What every PDF template's <style> starts with: the @font-face rules and the stack for the page (its
    margin boxes inherit from it, not from the body), the document and the elements the user agent sets in
    `monospace` (a system font). Markup: quotes stay quotes in <style>."""
    return Markup(
        f"{font_faces()}\n@page {{ font-family: {FONT_STACK}; }}\n"
        f"html, code, kbd, pre, samp, tt {{ font-family: {FONT_STACK}; }}"
    )


RTL_LANGUAGES = frozenset({"ar", "arc", "dv", "fa", "he", "ku", "ps", "sd", "ug", "ur", "yi"})


def direction(language: str) -> str:
    """`rtl` for a language written right to left (its primary subtag: `ar-EG`), else `ltr`."""
    return "rtl" if language.split("-")[0].split("_")[0].lower() in RTL_LANGUAGES else "ltr"
