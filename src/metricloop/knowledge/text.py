"""Text similarity in Chinese and English, offline: tokens that need no dictionary and no model, ranked by BM25.

Chinese has no spaces, and a word list (jieba) would still miss shop codes and new product names, so a run of
CJK characters gives its single characters and its character bigrams: 断货 → 断, 货, 断货. Latin text gives its
words (case-folded, NFKC-normalised so full-width ＳＨ－００３ is SH-003) and the character trigrams of each word,
which let "restock" find "restocked"; a code such as SH-003 is kept whole as well as in parts. Bigrams and whole
words count more than single characters and trigrams (WEIGHTS), so an exact phrase outranks a scatter of letters.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_RUN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+(?:[-_.][^\W_{_CJK}]+)*", re.UNICODE)
WEIGHTS = {"c1": 0.5, "c2": 1.0, "w": 1.0, "t3": 0.3}


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold()


def tokens(text: str) -> Counter:
    """Weighted tokens of `text` (a token is prefixed by its kind, so a trigram never meets a word)."""
    out: Counter = Counter()
    for run in _RUN.findall(normalize(text)):
        if re.match(rf"[{_CJK}]", run):
            for ch in run:
                out["c1:" + ch] += WEIGHTS["c1"]
            for a, b in zip(run, run[1:], strict=False):
                out["c2:" + a + b] += WEIGHTS["c2"]
            continue
        parts = re.split(r"[-_.]", run)
        words = [run, *parts] if len(parts) > 1 else parts
        for w in words:
            out["w:" + w] += WEIGHTS["w"]
        for w in parts:
            if len(w) > 3 and not w.isdigit():
                padded = f"^{w}$"
                for i in range(len(padded) - 2):
                    out["t3:" + padded[i : i + 3]] += WEIGHTS["t3"]
    return out


# words that say nothing about why two incidents are alike; BM25 already weighs them near zero, but a
# person reading "similar words: the, of" would rightly doubt the match
FUNCTION_WORDS = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "in", "is", "it", "its", "of", "on",
    "or", "the", "to", "was", "were", "with", "的", "了", "是", "在", "和", "与", "及",
})  # fmt: skip


def matched_words(query: str, text: str) -> list[str]:
    """The query's words and CJK bigrams (or single characters) that `text` contains, for "why it matched"
    (function words left out)."""
    q, t = tokens(query), tokens(text)
    common = [k for k in q if k in t and k.split(":", 1)[1] not in FUNCTION_WORDS]
    shown = [k.split(":", 1)[1] for k in common if k.startswith(("w:", "c2:"))]
    if not shown:
        shown = [k.split(":", 1)[1] for k in common if k.startswith("c1:")]
    return shown[:6]


class BM25:
    """Okapi BM25 over weighted token counts (k1 = 1.2, b = 0.75): `scores(query)` → one score per document.
    An inverted index (token → documents), so a query costs what its tokens' postings cost, not the corpus."""

    def __init__(self, docs: Sequence[Counter], k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.n = len(docs)
        lengths = [sum(d.values()) for d in docs]
        avg = (sum(lengths) / self.n) if self.n else 0.0
        self.norm = [k1 * (1 - b + b * length / avg) if avg else k1 for length in lengths]
        self.postings: dict[str, list[tuple[int, float]]] = {}
        for i, d in enumerate(docs):
            for t, f in d.items():
                self.postings.setdefault(t, []).append((i, f))
        self.idf = {t: math.log(1 + (self.n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self.postings.items()}

    def scores(self, query: Counter | str) -> list[float]:
        q = tokens(query) if isinstance(query, str) else query
        out = [0.0] * self.n
        k1, norm = self.k1, self.norm
        for t, qw in q.items():
            postings = self.postings.get(t)
            if not postings:
                continue
            w = self.idf[t] * qw * (k1 + 1)
            for i, f in postings:
                out[i] += w * f / (f + norm[i])
        return out


def joined(parts: Iterable[str | None]) -> str:
    return "\n".join(p for p in parts if p)
