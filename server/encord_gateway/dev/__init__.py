"""Development helpers: a local stack of emulator and gateway, and the `make run` demo."""
