"""The console's words come from three dicts merged into one: a key defined twice silently replaces the other's text
(the routes test's "Why" once ate the incident's "Why P1:" label). Every overlap must be one of these, on purpose."""

from metricloop.web.console import words
from metricloop.web.console.words_ops import OPS_WORDS

MEANT = {"total", "resolve"}  # the operating screens' shorter "total"; the console's button "Resolve"


def test_no_word_is_defined_twice_by_accident():
    for lang in ("zh", "en"):
        page, console, ops = words.PAGE_WORDS[lang], words._CONSOLE[lang], OPS_WORDS[lang]
        overlap = (set(page) & set(ops)) | (set(console) & set(ops)) | (set(page) & set(console))
        assert overlap <= MEANT, sorted(overlap - MEANT)
        assert words.WORDS[lang]["why"] == page["why"] and "{code}" in words.WORDS[lang]["why"]
