"""Slack's message formatting: Slack, Mattermost and Rocket.Chat read `<!channel>`,
`<@U123>` and `<url|text>` in a message's text as mentions and links, so a device or
incident name containing them would page a whole channel. `slack_escape` turns `&`,
`<` and `>` into the entities Slack documents, so such text shows as typed."""

from __future__ import annotations

__all__ = ["slack_escape"]


def slack_escape(text: str) -> str:
    """`text` with `&`, `<` and `>` escaped as Slack's message formatting requires."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
