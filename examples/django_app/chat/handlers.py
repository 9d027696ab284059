"""What the listener does with each new message: your application's work goes here."""

from __future__ import annotations

import logging

from signalwire_conversation import ConversationMessageEvent

logger = logging.getLogger(__name__)


def handle_message(event: ConversationMessageEvent) -> None:
    """Called once per new message, in order, on the SDK's dispatcher thread.

    Keep it short: save a row, enqueue a Celery/RQ task, publish to a channel layer. It may call
    the client (say, to answer) without deadlocking. An exception here is logged by the SDK and
    passed to ``on_error``; the listener keeps going.
    """
    logger.info("message %s from %s: %s", event.id, event.user_id, event.text)
