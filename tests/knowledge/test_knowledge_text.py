"""The offline text similarity of the knowledge base: tokens for Chinese and English, and BM25 ranking."""

from __future__ import annotations

from metricloop.knowledge.similar import short_actions, slice_similarity
from metricloop.knowledge.text import BM25, matched_words, tokens


def test_chinese_gives_characters_and_bigrams_latin_gives_words_and_trigrams():
    t = tokens("SH-003 断货 Restocked")
    assert {"c1:断", "c1:货", "c2:断货", "w:sh-003", "w:sh", "w:003", "w:restocked", "t3:^re"} <= set(t)
    assert "t3:003" not in t  # digits are matched whole, not by trigrams


def test_unicode_is_normalised_and_what_is_not_text_is_ignored():
    assert tokens("ＳＨ－００３") == tokens("sh-003")  # full-width is the same as ASCII
    assert tokens("STOCK-OUT") == tokens("stock-out")
    assert tokens("🙂🚚 !!! ???") == {} and tokens("") == {}
    assert set(tokens("断货🙂")) == set(tokens("断货"))


def test_bm25_ranks_the_phrase_first_in_either_language():
    docs = ["上海店生鲜断货，补货后恢复", "承运商 ZTO 在华南延误", "The miniapp was down: rolled back the release",
            "Fresh ran out of stock at SH-003; restocked from the warehouse"]
    index = BM25([tokens(d) for d in docs])
    for query, best in (("断货", 0), ("延误", 1), ("outage down", 2), ("restock", 3), ("sh-003", 3)):
        scores = index.scores(query)
        assert max(range(len(docs)), key=scores.__getitem__) == best, query
    assert index.scores("台风") == [0.0] * 4
    assert BM25([]).scores("断货") == []


def test_matched_words_say_why():
    assert matched_words("生鲜断货", "SH-003 生鲜断货") == ["生鲜", "鲜断", "断货"]
    assert matched_words("Restock", "restocked from WH") == []  # trigrams alone are not shown as words
    assert matched_words("断", "断货") == ["断"]
    # function words say nothing of why two incidents are alike
    assert matched_words("visitors of the North region", "the North supplier was late") == ["north"]


def test_short_actions_take_the_first_sentence_in_the_readers_language():
    both = "紧急补货（区域仓调拨） / restocked from the regional warehouse"
    assert short_actions(both, "zh") == "紧急补货（区域仓调拨）"
    assert short_actions(both, "en") == "restocked from the regional warehouse"
    assert short_actions("补货。再联系供应商", "en") == "补货"
    assert short_actions("x" * 100, "en").endswith("…") and len(short_actions("x" * 100, "en")) == 40


def test_slice_similarity():
    assert slice_similarity(["store=SH-003"], ["store=SH-003"])[0] == 1.0
    assert slice_similarity(["store=SH-003"], ["store=GZ-001"]) == (0.5, {"code": "same_dimensions",
                                                                           "dimensions": ["store"]})
    score, why = slice_similarity(["carrier=ZTO,region=South"], ["carrier=SF,region=South"])
    assert why["code"] == "shared_values" and why["values"] == ["region=South"] and 0.2 < score < 0.8
    assert slice_similarity(["city=Wuhan"], ["store=SH-003"]) == (0.0, None)
