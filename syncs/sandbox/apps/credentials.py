"""The credentials the sandboxes accept, keyed by the env var names destinations.yml's sandbox profile uses.

They are fixtures for local servers, not secrets: they open nothing but the sandboxes on 127.0.0.1.
"""

from __future__ import annotations

import os

MAILCHIMP_API_KEY = "TIDINGS_MAILCHIMP_API_KEY"
SENDGRID_API_KEY = "TIDINGS_SENDGRID_API_KEY"
META_ACCESS_TOKEN = "TIDINGS_META_ACCESS_TOKEN"
GOOGLE_ADS_ACCESS_TOKEN = "TIDINGS_GOOGLE_ADS_ACCESS_TOKEN"
GOOGLE_ADS_DEVELOPER_TOKEN = "TIDINGS_GOOGLE_ADS_DEVELOPER_TOKEN"
LOB_API_KEY = "TIDINGS_LOB_API_KEY"
MAILHOUSE_SFTP_PASSWORD = "TIDINGS_MAILHOUSE_SFTP_PASSWORD"
WEBHOOK_SECRET = "TIDINGS_WEBHOOK_SECRET"

MAILHOUSE_SFTP_USERNAME = "tidings"

SANDBOX_CREDENTIALS: dict[str, str] = {
    MAILCHIMP_API_KEY: "sandbox0mailchimp0key-us21",
    SENDGRID_API_KEY: "SG.sandbox.sendgrid-key",
    META_ACCESS_TOKEN: "sandbox-meta-access-token",
    GOOGLE_ADS_ACCESS_TOKEN: "sandbox-google-oauth-token",
    GOOGLE_ADS_DEVELOPER_TOKEN: "sandbox-google-developer-token",
    LOB_API_KEY: "test_sandbox_lob_key",
    MAILHOUSE_SFTP_PASSWORD: "sandbox-mailhouse-password",
    WEBHOOK_SECRET: "sandbox-webhook-signing-secret",
}


def use_sandbox_credentials() -> None:
    """Point every sandbox-profile secret env var at what the sandboxes accept, unless already set."""
    for name, value in SANDBOX_CREDENTIALS.items():
        os.environ.setdefault(name, value)
