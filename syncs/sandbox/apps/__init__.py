"""The sandbox apps, one module per provider, and the credentials they accept.

`all_apps()` builds a fresh instance of each; `SANDBOX_CREDENTIALS` maps the env var names the sandbox
profile of destinations.yml uses to the values the apps accept; `use_sandbox_credentials()` sets them
(without overriding what the environment already holds).
"""

from __future__ import annotations

from syncs.sandbox.apps.credentials import SANDBOX_CREDENTIALS, use_sandbox_credentials
from syncs.sandbox.apps.google_ads import GoogleAdsApp
from syncs.sandbox.apps.lob import LobApp
from syncs.sandbox.apps.mailchimp import MailchimpApp
from syncs.sandbox.apps.meta import MetaApp
from syncs.sandbox.apps.sendgrid import SendGridApp
from syncs.sandbox.apps.webhook import WebhookApp
from syncs.sandbox.server import SandboxApp

__all__ = ["SANDBOX_CREDENTIALS", "all_apps", "use_sandbox_credentials"]


def all_apps() -> list[SandboxApp]:
    return [WebhookApp(), MailchimpApp(), MetaApp(), GoogleAdsApp(), LobApp(), SendGridApp()]
