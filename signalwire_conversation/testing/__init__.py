"""A local emulator of the SignalWire Conversation backend, for demos and tests."""
