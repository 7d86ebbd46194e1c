"""One module per command; each is thin and calls into the library."""
