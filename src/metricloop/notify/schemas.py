"""Channel definitions: where notifications go."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from metricloop.definitions.schemas import EnvSecret, Name, Spec


class _Channel(Spec):
    name: Name
    description: str = ""
    language: Literal["zh", "en"] = "zh"
    max_attempts: int = Field(8, ge=1, le=50, description="tries before a message is dead-lettered")
    timeout: float = Field(10.0, gt=0, le=120, description="seconds per delivery attempt")


class EmailChannelSpec(_Channel):
    type: Literal["email"]
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    username: str | None = None
    password: EnvSecret = Field(None, description="write as ${ENV_VAR}")
    starttls: bool = False
    ssl: bool = False
    sender: str = Field("metricloop@localhost", alias="from")
    to: list[str] = Field(default_factory=list, description="extra recipients; the assignee is added")


class WebhookChannelSpec(_Channel):
    type: Literal["webhook"]
    url: str
    secret: EnvSecret = Field(None, description="HMAC-SHA256 key, as ${ENV_VAR}")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        import httpx

        try:
            u = httpx.URL(v.replace("${", "").replace("}", ""))
        except Exception:
            raise ValueError(f"'{v}' is not a URL") from None
        if u.scheme not in ("http", "https") or not u.host:
            raise ValueError(f"'{v}' is not an http(s) URL with a host")
        return v


class AppriseChannelSpec(_Channel):
    """DingTalk, WeCom, Feishu/Lark, Slack and 100+ more through apprise URLs."""

    type: Literal["apprise"]
    url: str = Field(description="an apprise URL, e.g. dingtalk://TOKEN/, wecombot://KEY, feishu://TOKEN, slack://…")

    @field_validator("url")
    @classmethod
    def _apprise(cls, v: str) -> str:
        import apprise

        probe = v.replace("${", "").replace("}", "")
        if apprise.Apprise.instantiate(probe) is None:
            raise ValueError(f"'{v}' is not a URL apprise understands (see the apprise wiki for dingtalk://, …)")
        return v


ChannelSpec = Annotated[EmailChannelSpec | WebhookChannelSpec | AppriseChannelSpec, Field(discriminator="type")]
