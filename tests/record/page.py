"""A batch record page read back as a person's browser would see it (html.parser):
its tables by id (rows of attributes and cell texts), the text of elements by id, and
every element and attribute that could load or run something."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Row:
    attrs: dict[str, str]
    cells: list[str] = field(default_factory=list)


@dataclass
class Page:
    tables: dict[str, list[Row]] = field(default_factory=dict)
    text: dict[str, str] = field(default_factory=dict)  # element id -> its text
    tags: list[str] = field(default_factory=list)  # every start tag, in order
    urls: list[str] = field(default_factory=list)  # src and href values
    handlers: list[str] = field(default_factory=list)  # on* attributes
    body_text: str = ""

    def column(self, table: str, name: str) -> list[str]:
        """The cells of the column headed ``name`` (the table's first row is its head)."""
        head, *rows = self.tables[table]
        index = head.cells.index(name)
        return [row.cells[index] for row in rows]

    def rows(self, table: str) -> list[dict[str, str]]:
        """The table's rows as {heading: cell} (its attributes under "@name")."""
        head, *rows = self.tables[table]
        out = []
        for row in rows:
            item = dict(zip(head.cells, row.cells, strict=True))
            item.update({f"@{k}": v for k, v in row.attrs.items()})
            out.append(item)
        return out


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.table: str | None = None
        self.row: Row | None = None
        self.cell: list[str] | None = None
        self.open_ids: list[tuple[str, str, list[str]]] = []  # (tag, id, text parts)
        self.depth: list[str] = []
        self.all_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.page.tags.append(tag)
        self.page.urls += [a[k] for k in ("src", "href") if k in a]
        self.page.handlers += [k for k in a if k.startswith("on")]
        if tag == "table" and "id" in a:
            self.table = a["id"]
            self.page.tables[self.table] = []
        elif tag == "tr" and self.table is not None:
            self.row = Row(a)
            self.page.tables[self.table].append(self.row)
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
        if "id" in a and tag not in ("img", "br", "meta"):
            self.open_ids.append((tag, a["id"], []))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.row is not None and self.cell is not None:
            self.row.cells.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr":
            self.row = None
        elif tag == "table":
            self.table = None
        if self.open_ids and self.open_ids[-1][0] == tag:
            _tag, ident, parts = self.open_ids.pop()
            self.page.text[ident] = " ".join("".join(parts).split())

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)
        for _tag, _id, parts in self.open_ids:
            parts.append(data)
        self.all_text.append(data)


def read(html: str) -> Page:
    reader = _Reader()
    reader.feed(html)
    reader.close()
    reader.page.body_text = " ".join("".join(reader.all_text).split())
    return reader.page
