"""A faithful emulator of the Levret futures API, served on loopback."""
