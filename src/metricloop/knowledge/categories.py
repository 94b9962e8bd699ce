"""The governed list of root-cause categories.

A stock list ships with metricloop (STOCK). A workspace edits it with definitions of the kind `root_cause`
(`metricloop apply`, versioned and exported like every definition, so only whoever may apply definitions — the
workspace's admins — changes it): a definition named like a stock category replaces its names and keywords, a new
name adds a category, `retired: true` takes one out of the choices for new resolutions (entries that have it keep
it). `other` is always there: it is what a resolution without a category gets.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from metricloop.definitions.schemas import Name, Spec, Title
from metricloop.errors import MetricloopError

OTHER = "other"


class RootCauseSpec(Spec):
    """One root-cause category: its names in zh and en, words that point at it, and whether it is retired."""

    name: Name
    title: Title
    description: str = ""
    keywords: list[str] = Field(default_factory=list, description="words in causes and actions that point here")
    retired: bool = False


@dataclass(frozen=True)
class Category:
    name: str
    zh: str
    en: str
    keywords: tuple[str, ...] = ()
    description: str = ""
    retired: bool = False
    stock: bool = True

    def label(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en

    def as_dict(self) -> dict:
        return {"name": self.name, "zh": self.zh, "en": self.en, "keywords": list(self.keywords),
                "description": self.description, "retired": self.retired, "stock": self.stock}


STOCK: tuple[Category, ...] = (
    Category("stock_out", "断货", "stock-out",
             ("断货", "缺货", "库存", "补货", "调拨", "stock-out", "stockout", "out of stock", "restock", "inventory")),
    Category("outage", "渠道或系统故障", "channel or system outage",
             ("故障", "宕机", "中断", "系统", "渠道", "小程序", "支付", "outage", "down", "system", "channel", "bug",
              "release", "rollback")),
    Category("data_issue", "数据问题", "data issue",
             ("数据", "延迟", "缺失", "口径", "重复", "data", "feed", "late", "missing", "pipeline", "duplicate")),
    Category("promotion_price", "促销或价格变动", "promotion or price change",
             ("促销", "活动", "价格", "调价", "优惠", "promotion", "campaign", "price", "discount", "coupon")),
    Category("supplier_carrier", "供应商或承运商", "supplier or carrier",
             ("供应商", "承运商", "快递", "物流", "配送", "延误", "质量", "supplier", "carrier", "courier", "delivery",
              "late", "quality", "batch")),
    Category("external_event", "外部事件", "external event",
             ("天气", "台风", "暴雨", "疫情", "竞品", "政策", "节假日", "weather", "storm", "typhoon", "competitor",
              "policy", "holiday", "event")),
    Category(OTHER, "其他", "other", ()),
)


def categories(catalog=None, *, include_retired: bool = True) -> list[Category]:
    """The stock list with the workspace's `root_cause` definitions applied, stock order first."""
    found: dict[str, Category] = {c.name: c for c in STOCK}
    defined = catalog.all("root_cause") if catalog is not None else {}
    for name, spec in sorted(defined.items()):
        found[name] = Category(
            name=name,
            zh=spec.title.zh or spec.title.en or name,
            en=spec.title.en or spec.title.zh or name,
            keywords=tuple(spec.keywords),
            description=spec.description,
            retired=spec.retired and name != OTHER,  # `other` is the fallback: it cannot go
            stock=name in {c.name for c in STOCK},
        )
    return [c for c in found.values() if include_retired or not c.retired]


def by_name(catalog=None) -> dict[str, Category]:
    return {c.name: c for c in categories(catalog)}


def label(catalog, name: str, lang: str) -> str:
    c = by_name(catalog).get(name)
    return c.label(lang) if c is not None else name


def check_category(catalog, value: str | None, *, where: str = "category", retired: bool = False) -> str | None:
    """The category's name for a new resolution or an edit (a zh or en name is taken too), None when not given.
    An unknown one is refused with the list of those that can be used; so is a retired one, unless `retired`
    (a filter: entries keep a category that was retired after them)."""
    if value is None or not value.strip():
        return None
    wanted = value.strip()
    usable = categories(catalog, include_retired=retired)
    for c in usable:
        if wanted.casefold() in (c.name.casefold(), c.zh.casefold(), c.en.casefold()):
            return c.name
    choices = ", ".join(c.name for c in usable)
    retired = by_name(catalog).get(wanted)
    why = "is retired" if retired is not None and retired.retired else "is not a root-cause category"
    raise MetricloopError(f"'{wanted}' {why}: use one of {choices}", where=where)
