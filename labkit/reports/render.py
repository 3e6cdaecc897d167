"""One report model, two renderers: GitHub-flavoured Markdown (files, CI) and HTML (Jupyter).

Every report builds a :class:`Document` (facts, tables, preformatted blocks) from its dataclass; the two
renderers below draw the same document, so Markdown and HTML always show the same rows. Text that comes
from the cluster (pod logs, event messages, names) is untrusted: :func:`clean_text` strips ANSI escapes,
makes other control characters visible and caps the length, and each renderer escapes what is left for its
format, so a log line cannot add a table column, close a code fence or inject a tag.

>>> clean_text("\\x1b[31mred\\x1b[0m\\rbell\\x07", 80)
'red\\\\rbell\\\\x07'
>>> markdown_cell("a|b <i>*x*</i>")
'a\\\\|b &lt;i&gt;\\\\*x\\\\*&lt;/i&gt;'
>>> pods = Table("pods", ("pod", "phase"), (("demo", "Running"),))
>>> doc = Document("Pods", facts=(("namespace", "lab-06"),), tables=(pods,))
>>> print(to_markdown(doc))
### Pods
<BLANKLINE>
- **namespace**: lab-06
<BLANKLINE>
#### pods
<BLANKLINE>
| pod | phase |
|---|---|
| demo | Running |
<BLANKLINE>
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

#: ANSI/VT100 escape sequences: CSI (colours, cursor moves), OSC (titles, hyperlinks), and two-byte escapes.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
#: Characters that must not reach a Markdown or HTML document as they are: C0 controls but tab, DEL, C1
#: controls, and the Unicode line and paragraph separators some renderers treat as line breaks.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
#: What a Markdown table cell escapes with a backslash (table pipes, emphasis, code, links, escapes).
_MARKDOWN_SPECIAL = re.compile(r"([\\|`*_\[\]~])")
#: Longest cell a table shows; event messages can be long, and a table is a summary.
CELL_CHARS = 400


def _visible(ch: str) -> str:
    code = ord(ch)
    named = {"\n": "\\n", "\r": "\\r"}
    return named.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def clean_text(text: str, limit: int) -> str:
    """*text* safe to show: ANSI escapes removed, other control characters written as ``\\xNN``, at most
    *limit* characters (what is cut is counted at the end).

    >>> clean_text("x" * 12, 5)
    'xxxxx… [7 more characters cut]'
    """
    text = _CONTROL.sub(lambda m: _visible(m.group()), _ANSI.sub("", text))
    if len(text) > limit:
        return f"{text[:limit]}… [{len(text) - limit} more characters cut]"
    return text


def one_line(text: str, limit: int = CELL_CHARS) -> str:
    """A multi-line message (an event's) as one cleaned line: line breaks become `` ⏎ ``."""
    return clean_text(" ⏎ ".join(part.rstrip("\r") for part in str(text).strip().split("\n")), limit)


def markdown_cell(text: str) -> str:
    """*text* (already cleaned) escaped for a GitHub-flavoured Markdown table cell or list item."""
    text = html.escape(text, quote=False)  # GitHub renders inline HTML: make it text
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


@dataclass(frozen=True)
class Table:
    """A titled table of text cells (plain, not yet escaped); *empty* is shown when it has no rows."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str = "none"


@dataclass(frozen=True)
class Block:
    """Preformatted lines (log lines), already cleaned, under a title."""

    title: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Document:
    """What a report shows: a title, ``(name, value)`` facts, tables, then preformatted blocks."""

    title: str
    facts: tuple[tuple[str, str], ...] = ()
    tables: tuple[Table, ...] = ()
    blocks: tuple[Block, ...] = field(default_factory=tuple)


def _cell(value: str) -> str:
    return one_line(value)


def fence_for(lines: tuple[str, ...] | list[str]) -> str:
    """A code fence longer than any run of backticks in *lines*, so no line can close it.

    >>> fence_for(["a ``` b"])
    '````'
    """
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def to_markdown(doc: Document) -> str:
    """*doc* as GitHub-flavoured Markdown: ``###`` title, a list of facts, ``####`` tables, fenced blocks."""
    out = [f"### {markdown_cell(_cell(doc.title))}", ""]
    if doc.facts:
        out += [f"- **{markdown_cell(_cell(k))}**: {markdown_cell(_cell(v))}" for k, v in doc.facts]
        out.append("")
    for table in doc.tables:
        out += [f"#### {markdown_cell(_cell(table.title))}", ""]
        if not table.rows:
            out += [f"_{markdown_cell(_cell(table.empty))}_", ""]
            continue
        out.append("| " + " | ".join(markdown_cell(_cell(c)) for c in table.columns) + " |")
        out.append("|" + "---|" * len(table.columns))
        out += ["| " + " | ".join(markdown_cell(_cell(v)) for v in row) + " |" for row in table.rows]
        out.append("")
    for block in doc.blocks:
        fence = fence_for(block.lines)
        out += [f"#### {markdown_cell(_cell(block.title))}", "", f"{fence}text", *block.lines, fence, ""]
    return "\n".join(out)


_STYLE = (
    "<style>.labkit-report table{border-collapse:collapse;margin:2px 0 8px}"
    ".labkit-report th,.labkit-report td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
    ".labkit-report pre{max-height:24em;overflow:auto;font-size:90%}</style>"
)


def to_html(doc: Document) -> str:
    """*doc* as one HTML fragment for Jupyter: every cell escaped, blocks folded in ``<details>``."""

    def esc(value: str) -> str:
        return html.escape(_cell(value))

    parts = [_STYLE, "<div class='labkit-report'>", f"<h4>{esc(doc.title)}</h4>"]
    if doc.facts:
        parts.append(
            "<table class='facts'>"
            + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in doc.facts)
            + "</table>"
        )
    for table in doc.tables:
        parts.append(f"<b>{esc(table.title)}</b>")
        if not table.rows:
            parts.append(f"<p><i>{esc(table.empty)}</i></p>")
            continue
        head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in table.rows)
        parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    for block in doc.blocks:
        text = html.escape("\n".join(block.lines))
        parts.append(f"<details><summary>{esc(block.title)}</summary><pre>{text}</pre></details>")
    parts.append("</div>")
    return "".join(parts)


class Rendered:
    """Mixin for a report dataclass: ``document()`` builds its :class:`Document`; Markdown, HTML and ``str``
    follow from it."""

    def document(self) -> Document:
        raise NotImplementedError

    def to_markdown(self) -> str:
        """The report as GitHub-flavoured Markdown (for files, CI step summaries, ``print``)."""
        return to_markdown(self.document())

    def _repr_html_(self) -> str:
        return to_html(self.document())

    def __str__(self) -> str:
        return self.to_markdown()
