"""Settings of the example project: no database, one app (``chat``).

The SignalWire settings are read by ``chat.signalwire``: the project credentials for the
per-user clients, a token for the service client. Left ``None``, the ``SIGNALWIRE_*``
environment variables of the same names apply.
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

SIGNALWIRE_PROJECT_ID = os.environ.get("SIGNALWIRE_PROJECT_ID")
SIGNALWIRE_API_TOKEN = os.environ.get("SIGNALWIRE_API_TOKEN")  # a secret: keep it out of the code
SIGNALWIRE_SPACE = os.environ.get("SIGNALWIRE_SPACE")  # example.signalwire.com
SIGNALWIRE_TOKEN = os.environ.get("SIGNALWIRE_TOKEN")
SIGNALWIRE_BASE_URL = os.environ.get("SIGNALWIRE_BASE_URL")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # The SDK logs under "signalwire_conversation" (tokens are redacted); INFO shows reconnects.
    "loggers": {"signalwire_conversation": {"handlers": ["console"], "level": "INFO"}},
}
