"""A pybtex style whose bibliography labels read like the citations: "[Author et al., 2020]".

sphinxcontrib-bibtex cites with ``bibtex_reference_style: author_year`` ("Sainte Fare Garnot et
al., 2020") but labels the bibliography with the formatting style's label style, "[SFGLC20]" for
the default ``alpha``. This extension registers ``authoryear``, the ``unsrt`` formatting with
author-year labels, so that a reader finds a citation in the bibliography under the same name.
"""

from __future__ import annotations

import codecs
import re

import latexcodec  # noqa: F401  (registers the "ulatex" codec)
from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _plain(latex: str) -> str:
    """LaTeX accents and braces to plain text: 'Ru{\\ss}wurm' -> 'Rußwurm'."""
    return re.sub(r"[{}]", "", codecs.decode(latex, "ulatex"))


def _last_name(person) -> str:
    return _plain(" ".join(person.prelast_names + person.last_names))


def author_year(entry) -> str:
    """'Lin et al., 2017', 'Ba and Kiros, 2016', 'Rouse, 1974' or, without authors, the key."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_last_name(p) for p in persons]
    year = entry.fields.get("year", "n.d.")
    if not names:
        who = _plain(entry.fields.get("title", entry.key))
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {year}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        labels = [author_year(e) for e in sorted_entries]
        seen: dict[str, int] = {}
        for label in labels:
            seen[label] = seen.get(label, 0) + 1
        count: dict[str, int] = {}
        for label in labels:
            if seen[label] > 1:  # two works of the same authors and year: 2020a, 2020b
                count[label] = count.get(label, 0) + 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[count[label] - 1]
            else:
                yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
