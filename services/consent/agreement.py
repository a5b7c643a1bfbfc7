"""The Data Access Agreement text, its structure (21 clauses) and its content hash."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

CLAUSE = re.compile(r"^(\d+)\. (.+)$")


@dataclass(frozen=True)
class AgreementText:
    version: int
    text: str

    @property
    def content_hash(self) -> str:
        return "sha256:" + hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def title(self) -> str:
        return self.text.splitlines()[0]

    @property
    def clauses(self) -> list[str]:
        return [m.group(2) for line in self.text.splitlines() if (m := CLAUSE.match(line))]

    def parts(self) -> dict[str, object]:
        """Title, preamble, numbered clauses and closing, as the page shows them."""
        paragraphs = [p.strip() for p in self.text.split("\n\n") if p.strip()]
        header = paragraphs[0].splitlines()
        numbered = [p for p in paragraphs if CLAUSE.match(p.splitlines()[0])]
        after = paragraphs[paragraphs.index(numbered[-1]) + 1 :] if numbered else []
        return {
            "title": header[0],
            "audience": header[1] if len(header) > 1 else "",
            "preamble": paragraphs[1],
            "clauses": self.clauses,
            "closing": after,
        }


def load(version: int = 1) -> AgreementText:
    text = resources.files("services.consent").joinpath(f"agreement_v{version}.txt").read_text(
        encoding="utf-8"
    )
    return AgreementText(version, text)


CURRENT = load(1)
