"""The notification channels, keyed by kind.

To add a channel: write its module (a class implementing app/notify/channels.Channel and a
``build(settings, policy)`` function), import it here and add its ``build`` to CHANNELS.
Nothing else knows the kinds: the outbox and the deliverer go through the registry, and
the database stores the kind as text (the registry, not SQLite, decides which are valid).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

from app.models import JobConfig, Project, WebhookEvent
from app.notify import slack, webhook
from app.notify.channels import Channel, ChannelInfo, Planned, RunView
from app.notify.outbound import OutboundPolicy
from app.settings import Settings

ChannelFactory = Callable[[Settings, OutboundPolicy], Channel]

# Planning follows this order, so a run's notifications are listed Slack first.
CHANNELS: tuple[ChannelFactory, ...] = (slack.build, webhook.build)

# Kinds are stored on rows, shown by the API and used as a metric label: keep them tame.
_KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")


class Registry:
    def __init__(self, channels: Sequence[Channel]) -> None:
        self._channels: dict[str, Channel] = {}
        for channel in channels:
            kind = channel.info.kind
            if not _KIND.fullmatch(kind):
                raise ValueError(f"channel kind {kind!r}: use 1 to 32 of a-z, 0-9 and _")
            if kind in self._channels:
                raise ValueError(f"two channels of kind {kind!r}")
            self._channels[kind] = channel

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._channels.values())

    def get(self, kind: str) -> Channel | None:
        return self._channels.get(kind)

    def describe(self) -> list[ChannelInfo]:
        return [channel.info for channel in self]

    def plan(
        self, job: JobConfig, event: WebhookEvent, project: Project | None
    ) -> list[tuple[Channel, Planned]]:
        """Every channel's notifications for one event of a run, in registration order."""
        found = []
        for channel in self:
            for planned in channel.plan(job, event, project):
                if planned.kind != channel.info.kind:  # the row's kind finds its channel
                    raise ValueError(f"channel {channel.info.kind!r} planned a {planned.kind!r}")
                found.append((channel, planned))
        return found

    def secrets(self, run: RunView, kind: str) -> list[str | None]:
        """What to blank out of the error of a delivery of ``kind`` for ``run``: every
        channel's credentials, and that channel's secrets for the run."""
        return [
            value
            for channel in self
            for value in channel.secrets(run if channel.info.kind == kind else None)
        ]

    def close(self) -> None:
        for channel in self:
            channel.close()


def build_registry(
    settings: Settings,
    policy: OutboundPolicy,
    factories: Sequence[ChannelFactory] | None = None,
) -> Registry:
    """The channels of CHANNELS (read when called), or of ``factories``."""
    return Registry([make(settings, policy) for make in factories or CHANNELS])
