"""pytest plugin: the ``signalwire_emulator`` fixture."""
