"""Text extraction: plain text, HTML, a PDF written here with fpdf2, a .docx built from its XML."""

from __future__ import annotations

import io
import zipfile

import pytest
from fpdf import FPDF

from aimass.errors import InvalidInput
from aimass.search.extract import extract_text, html_text, kind_of

HTML = """<!doctype html><html><head><title>T</title><style>p{color:red}</style>
<script>var hidden = 1;</script></head><body><h1>Vector&nbsp;stores</h1>
<p>Chunks are <b>embedded</b> &amp; indexed.</p><ul><li>one</li><li>two</li></ul>
<noscript>enable js</noscript></body></html>"""


def make_pdf(*pages: str) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


def make_docx(*paragraphs: str) -> bytes:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    xml = f'<?xml version="1.0"?><w:document xmlns:w="{w}"><w:body>{body}</w:body></w:document>'
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", xml)
    return out.getvalue()


def test_html_keeps_visible_text_only_one_block_a_line():
    assert html_text(HTML) == "Vector stores\nChunks are embedded & indexed.\none\ntwo"
    assert extract_text(HTML.encode(), "page.html", None) == html_text(HTML)
    assert extract_text(HTML.encode(), "page", "text/html; charset=utf-8") == html_text(HTML)


def test_pdf_pages_in_order(tmp_path):
    data = make_pdf("Retrieval augmented generation.", "Second page: hybrid search.")
    text = extract_text(data, "doc.pdf", "application/pdf")
    assert text == "Retrieval augmented generation.\n\nSecond page: hybrid search."
    (tmp_path / "doc.bin").write_bytes(data)  # no extension: the signature says PDF
    assert extract_text(tmp_path / "doc.bin", "doc.bin", None) == text


def test_docx_paragraphs():
    assert extract_text(make_docx("First.", "Second &amp; last."), "a.docx", None) == (
        "First.\nSecond & last."
    )


def test_text_and_markdown_as_utf8():
    assert (
        extract_text("# Title\n北京 naïve\n".encode(), "notes.md", None) == "# Title\n北京 naïve\n"
    )
    assert extract_text("\ufeffbom".encode(), "a.txt", "text/plain") == "bom"
    assert extract_text("utf16".encode("utf-16"), "a.txt", None) == "utf16"


@pytest.mark.parametrize(
    ("data", "name", "ctype", "reason"),
    [
        (b"\x00\x01\x02", "blob.bin", "application/octet-stream", "cannot extract text"),
        (b"\x89PNG\r\n\x1a\n", "image.png", "image/png", "is an image"),
        (b"%PDF-1.7 garbage", "broken.pdf", None, "not a readable PDF"),
        (b"PK\x03\x04 nope", "broken.docx", None, "not a readable .docx"),
        (b"caf\xe9", "latin1.txt", None, "not UTF-8 text"),
        (b"a\0b", "bin.txt", None, "binary"),
    ],
)
def test_unreadable_files_name_the_reason(data, name, ctype, reason):
    with pytest.raises(InvalidInput, match=reason) as err:
        extract_text(data, name, ctype)
    assert err.value.param == "file"


def test_a_pdf_without_a_text_layer_says_so():
    pdf = FPDF()
    pdf.add_page()
    with pytest.raises(InvalidInput, match="no text layer"):
        extract_text(bytes(pdf.output()), "scan.pdf", None)


@pytest.mark.parametrize(
    ("head", "name", "ctype"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\r", "scan", None),
        (b"\xff\xd8\xff\xe0", "upload.bin", None),
        (b"RIFF\x10\0\0\0WEBP", "x", None),
        (b"anything", "photo.JPG", None),
        (b"anything", "noext", "image/tiff"),
    ],
)
def test_images_are_told_by_extension_type_or_signature(head, name, ctype):
    assert kind_of(head, name, ctype) == "image"


def test_text_that_starts_like_a_bmp_stays_text():
    assert kind_of(b"BMW cars", "notes", None) == "text"
