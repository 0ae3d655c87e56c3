"""Text out of an uploaded file: plain text and Markdown, HTML, PDF and Word (``.docx``).

``extract_text`` is what file search indexes: it returns the document's readable text, or
raises ``InvalidInput`` with the reason a file cannot be read (an unsupported type, a broken
or encrypted PDF, bytes that are not UTF-8 text), so a vector-store file can be marked
``failed`` with that reason instead of indexing garbage.

The kind is decided by the file name's extension, then the content type, then the bytes'
signature (``%PDF-``, a zip holding ``word/document.xml``). Every reader is bounded: a
``.docx`` whose XML inflates past ``MAX_XML_BYTES`` is refused rather than inflated.
"""

from __future__ import annotations

import io
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from aimass.errors import InvalidInput

MAX_XML_BYTES = 64 * 1024 * 1024
"""Largest ``word/document.xml`` a ``.docx`` may inflate to (a zip bomb guard)."""

_TEXT_EXTENSIONS = (
    ".txt .md .markdown .rst .csv .tsv .json .jsonl .xml .yaml .yml .log .py .js .ts .java "
    ".c .h .cpp .hpp .cs .go .rs .rb .php .sh .sql .tex .css"
)
TEXT_EXTENSIONS = frozenset(_TEXT_EXTENSIONS.split())
"""Extensions read as UTF-8 text (OpenAI's file search accepts these source and text types)."""
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
"""Image files: indexed by models (OCR text, labels, an image vector), not extracted."""
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"II*\x00",
                     b"MM\x00*")  # fmt: skip
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

_KINDS_BY_TYPE = {"text/html": "html", "application/xhtml+xml": "html", "application/pdf": "pdf"}


def extract_text(data: bytes | Path, filename: str, content_type: str | None = None) -> str:
    """The readable text of one file, given as bytes or a path on disk.

    ``filename`` (its extension) and ``content_type`` say what the file is; the bytes' own
    signature decides when neither does. Raises ``InvalidInput`` (param ``file``) naming the
    reason for an unsupported type or a file that cannot be read as its type.
    """
    kind = kind_of(data, filename, content_type)
    if kind == "image":
        raise InvalidInput(f"{filename!r} is an image: it has no text to extract", param="file")
    if kind == "pdf":
        return _pdf_text(data, filename)
    if kind == "docx":
        return _docx_text(data, filename)
    raw = data.read_bytes() if isinstance(data, Path) else data
    text = _decode(raw, filename)
    return html_text(text) if kind == "html" else text


def kind_of(data: bytes | Path, filename: str, content_type: str | None = None) -> str:
    """What ``file_kind`` makes of a file given as bytes or a path."""
    return file_kind(filename, content_type, _head(data))


def file_kind(filename: str, content_type: str | None, head: bytes) -> str:
    """``text``, ``html``, ``pdf``, ``docx`` or ``image``; ``InvalidInput`` when none fits."""
    ext = Path(filename).suffix.lower()
    media = (content_type or "").split(";")[0].strip().lower()
    if ext in IMAGE_EXTENSIONS or media.startswith("image/") or _is_image(head):
        return "image"
    if ext == ".pdf" or head.startswith(b"%PDF-"):
        return "pdf"
    if ext == ".docx" or media == DOCX_TYPE:
        return "docx"
    if ext in HTML_EXTENSIONS:
        return "html"
    if ext in TEXT_EXTENSIONS:
        return "text"
    if media in _KINDS_BY_TYPE:
        return _KINDS_BY_TYPE[media]
    if media.startswith("text/") or (not ext and not media and b"\0" not in head):
        return "text"
    raise InvalidInput(
        f"cannot extract text from {filename!r} ({media or 'no content type'}): supported are "
        "plain text and source files, Markdown, HTML, PDF, .docx and images",
        param="file",
    )


def _head(data: bytes | Path) -> bytes:
    if isinstance(data, Path):
        with data.open("rb") as f:
            return f.read(12)
    return data[:12]


def _is_image(head: bytes) -> bool:
    """PNG, JPEG, GIF, WebP or TIFF by their signatures (BMP's ``BM`` is too short to tell
    from text: a BMP needs its extension or content type)."""
    if head.startswith(_IMAGE_SIGNATURES):
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _decode(raw: bytes, filename: str) -> str:
    """UTF-8 (a BOM allowed, UTF-16 when its BOM says so); anything else is refused."""
    try:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            return raw.decode("utf-16")
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{filename!r} is not UTF-8 text (undecodable byte at offset {exc.start})",
            param="file",
        ) from exc
    if "\0" in text:
        raise InvalidInput(f"{filename!r} holds NUL characters: binary, not text", param="file")
    return text


class _HtmlText(HTMLParser):
    """Collects the text of an HTML page: no scripts or styles, one line per block element."""

    SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg"})
    _BLOCKS = (
        "p div br li ul ol tr table section article header footer h1 h2 h3 h4 h5 h6 pre "
        "blockquote dt dd hr"
    )
    BLOCKS = frozenset(_BLOCKS.split())

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The visible text of ``html``: blank runs collapsed, one line per block."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _pdf_text(data: bytes | Path, filename: str) -> str:
    """The text layer of every page, pages separated by a blank line (pypdf)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    source = data if isinstance(data, Path) else io.BytesIO(data)
    try:
        reader = PdfReader(source)
        if reader.is_encrypted:
            raise InvalidInput(f"{filename!r} is an encrypted PDF", param="file")
        pages = [page.extract_text() or "" for page in reader.pages]
    except InvalidInput:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise InvalidInput(f"{filename!r} is not a readable PDF: {exc}", param="file") from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if pages and not text:
        raise InvalidInput(
            f"{filename!r} has no text layer (a scanned PDF?); OCR is not applied to PDFs",
            param="file",
        )
    return text


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx_text(data: bytes | Path, filename: str) -> str:
    """The paragraphs of ``word/document.xml``, one per line (tables' cells included)."""
    try:
        with zipfile.ZipFile(data if isinstance(data, Path) else io.BytesIO(data)) as z:
            xml = _read_bounded(z, "word/document.xml")
        root = ElementTree.fromstring(xml)
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise InvalidInput(f"{filename!r} is not a readable .docx: {exc}", param="file") from exc
    return "\n".join(p for p in (_paragraph(p) for p in root.iter(f"{_W}p")) if p)


def _read_bounded(z: zipfile.ZipFile, name: str) -> bytes:
    with z.open(name) as f:
        xml = f.read(MAX_XML_BYTES + 1)
    if len(xml) > MAX_XML_BYTES:
        raise InvalidInput(
            f"the .docx's {name} inflates past {MAX_XML_BYTES} bytes (MAX_XML_BYTES)",
            param="file",
        )
    return xml


def _paragraph(p: ElementTree.Element) -> str:
    out = []
    for node in p.iter():
        if node.tag == f"{_W}t" and node.text:
            out.append(node.text)
        elif node.tag == f"{_W}tab":
            out.append("\t")
        elif node.tag in (f"{_W}br", f"{_W}cr"):
            out.append("\n")
    return "".join(out).strip()
