"""Settings of the example project: no database, one app (``chat``).

The SignalWire settings are read by ``chat.signalwire.get_client()``. Leave them ``None`` to use
the ``SIGNALWIRE_TOKEN`` / ``SIGNALWIRE_BASE_URL`` environment variables.
"""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["chat"]
ROOT_URLCONF = "chatsite.urls"
DATABASES: dict = {}
USE_TZ = True

SIGNALWIRE_TOKEN = os.environ.get("SIGNALWIRE_TOKEN")
SIGNALWIRE_BASE_URL = os.environ.get("SIGNALWIRE_BASE_URL")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # The SDK logs under "signalwire_conversation" (tokens are redacted); INFO shows reconnects.
    "loggers": {"signalwire_conversation": {"handlers": ["console"], "level": "INFO"}},
}
