"""Learner content made inert before it reaches a person's browser (feedback, formgrader).

Everything a learner's notebook holds is written by the learner: cell outputs, markdown and
raw cells, attachments, cell ids and metadata. nbconvert (feedback HTML) and nbgrader's
formgrader copy rich outputs (``text/html``, ``application/javascript``, ``image/svg+xml``)
and raw HTML in markdown into the page, where a script runs with the rights of whoever opens
it, the instructor's Jupyter server included. So the grader rebuilds every learner cell from
scratch before nbgrader stores the autograded notebook (what both views render):

- outputs: ``stream`` and ``error`` as text; ``display_data`` / ``execute_result`` keep only
  ``text/plain`` and ``image/png`` (checked to be a PNG, re-encoded); everything else is
  dropped with a visible note; output metadata is dropped (nbconvert puts ``width`` into an
  unquoted attribute); long text is cut with a note; the whole cell has an output budget;
- markdown cells a learner can edit: every ``<`` escaped (raw HTML shows as text),
  links and images whose URL is not ``http(s)``, ``mailto`` or a relative path are neutralised,
  attachments other than PNG removed;
- raw cells: their text becomes an indented code block in a markdown cell (nbconvert copies
  raw cells with no or an HTML format into the page as they are);
- invalid cell ids are replaced; cell metadata except ``nbgrader`` and notebook metadata
  except kernel and language information are dropped.

The feedback exporter's own sanitiser (``HTMLExporter.sanitize_html``, bleach) is switched on
too (:mod:`utils.course.grading`); this module is the part that does not depend on it.
"""
from __future__ import annotations

import base64
import binascii
import html
import re
import uuid

from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell, new_output

#: Characters of one text output kept in the feedback.
MAX_TEXT_CHARS: int = 20_000
#: Characters of all the outputs of one cell kept (then the rest is dropped with a note).
MAX_CELL_CHARS: int = 100_000
#: Bytes of one PNG image kept.
MAX_PNG_BYTES: int = 2 * 1024 * 1024
#: Characters of one markdown or raw cell kept.
MAX_MARKDOWN_CHARS: int = 50_000
KEPT_MIME = ("text/plain", "image/png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SAFE_URL = re.compile(r"^(https?://|mailto:|#|\.{0,2}/|[\w.-]+(/|$))", re.I)
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: Markdown links and images: ``[text](url ...)`` / ``![alt](url ...)`` and autolinks.
_MD_LINK = re.compile(r"(!?\[[^\]\n]*\]\()\s*<?([^)\s>]*)>?([^)\n]*\))")
_AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]*)>")
_REF_LINK = re.compile(r"^(\s{0,3}\[[^\]\n]+\]:\s*)(\S+)(.*)$", re.M)
NOTE = "[removed by the grader: {what}]"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def truncate(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    return (text[:limit] + f"\n[output truncated by the grader: {len(text) - limit} more "
            f"characters not shown]\n")


def _png(value) -> str | None:
    """``value`` re-encoded when it is base64 of a PNG no larger than the limit, else None."""
    if not isinstance(value, (str, list)):
        return None
    text = _text(value)
    if len(text) > MAX_PNG_BYTES * 4 // 3 + 1024:
        return None
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(PNG_MAGIC):
        return None
    return base64.b64encode(raw).decode("ascii")


def clean_output(output) -> NotebookNode:
    """One output rebuilt from plain text and PNG only (see the module docstring)."""
    kind = output.get("output_type") if isinstance(output, dict) else None
    if kind == "stream":
        name = "stderr" if output.get("name") == "stderr" else "stdout"
        return new_output("stream", name=name, text=truncate(_text(output.get("text", ""))))
    if kind == "error":
        ename = truncate(str(output.get("ename", "Error")), 200)
        evalue = truncate(str(output.get("evalue", "")), 2_000)
        traceback = output.get("traceback", [])
        lines = [truncate(str(line), 2_000) for line in
                 (traceback if isinstance(traceback, list) else [traceback])[:50]]
        return new_output("error", ename=ename, evalue=evalue, traceback=lines)
    if kind in ("display_data", "execute_result"):
        data = output.get("data", {})
        data = data if isinstance(data, dict) else {}
        kept: dict[str, str] = {}
        png = _png(data.get("image/png"))
        if png is not None:
            kept["image/png"] = png
        if "text/plain" in data:
            kept["text/plain"] = truncate(_text(data["text/plain"]))
        dropped = sorted(str(k)[:40] for k in data if str(k) not in kept)
        if dropped:
            note = NOTE.format(what="output of type " + ", ".join(dropped))
            kept["text/plain"] = (kept.get("text/plain", "") + "\n" + note).lstrip("\n")
        if kind == "execute_result":
            count = output.get("execution_count")
            return new_output("execute_result", data=kept,
                              execution_count=count if isinstance(count, int) else None)
        return new_output("display_data", data=kept)
    return new_output("stream", name="stdout",
                      text=NOTE.format(what=f"output of kind {str(kind)[:40]!r}"))


def clean_outputs(outputs, budget: int = MAX_CELL_CHARS) -> list[NotebookNode]:
    """:func:`clean_output` of each output, at most ``budget`` characters per cell."""
    if not isinstance(outputs, list):
        return []
    out, used = [], 0
    for k, output in enumerate(outputs):
        cleaned = clean_output(output)
        size = len(str(cleaned))
        if used + size > budget:
            out.append(new_output("stream", name="stdout", text=(
                f"[output truncated by the grader: {len(outputs) - k} more output(s) of this "
                f"cell not shown]\n")))
            break
        out.append(cleaned)
        used += size
    return out


def _safe_url(url: str) -> str:
    return url if SAFE_URL.match(html.unescape(url).strip()) else "#removed-by-the-grader"


def clean_markdown(source: str) -> str:
    """Learner markdown with raw HTML shown as text and unsafe link targets neutralised."""
    text = truncate(_text(source), MAX_MARKDOWN_CHARS)
    text = _AUTOLINK.sub(lambda m: m.group(0) if SAFE_URL.match(m.group(1)) else
                         "removed-link", text)
    text = text.replace("<", "&lt;")  # no tag can open; entities stay text
    text = _MD_LINK.sub(lambda m: m.group(1) + _safe_url(m.group(2)) + m.group(3), text)
    return _REF_LINK.sub(lambda m: m.group(1) + _safe_url(m.group(2)) + m.group(3), text)


def _raw_as_markdown(source: str) -> str:
    """A raw cell's text as an indented code block: every line indented, so no line can leave
    the block, and markdown renderers escape code blocks themselves."""
    text = truncate(_text(source), MAX_MARKDOWN_CHARS)
    return "".join("    " + line + "\n" for line in text.splitlines()) or " "


def clean_cell(cell, editable: bool = True):
    """``cell`` made inert in place (see the module docstring); returns it (a raw cell comes
    back as a new markdown cell). ``editable=False`` (a locked cell restored from the
    instructor source) keeps its source and markdown."""
    cell_id = cell.get("id")
    if cell_id is not None and not (isinstance(cell_id, str) and _CELL_ID.match(cell_id)):
        cell["id"] = uuid.uuid4().hex[:8]
    nbgrader_meta = cell.get("metadata", {}).get("nbgrader")
    cell["metadata"] = NotebookNode({"nbgrader": nbgrader_meta} if isinstance(
        nbgrader_meta, dict) else {})
    if cell.get("cell_type") == "code":
        cell["outputs"] = clean_outputs(cell.get("outputs", []))
        cell["source"] = _text(cell.get("source", ""))
        return cell
    if cell.get("cell_type") == "raw":
        new = new_markdown_cell(_raw_as_markdown(cell.get("source", "")))
        new["metadata"] = cell["metadata"]
        return new
    cell.pop("attachments", None) if editable else None
    if editable:
        cell["source"] = clean_markdown(cell.get("source", ""))
    return cell


def clean_notebook(nb, locked: set[int] | None = None):
    """Every cell of ``nb`` through :func:`clean_cell` (``locked``: indices of cells restored
    from the instructor source), notebook metadata reduced to kernel and language."""
    locked = locked or set()
    nb.cells = [clean_cell(cell, editable=index not in locked)
                for index, cell in enumerate(nb.cells)]
    keep = {k: nb.metadata[k] for k in ("kernelspec", "language_info") if k in nb.metadata}
    nb.metadata = NotebookNode(keep)
    return nb
