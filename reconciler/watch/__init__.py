"""Watch mode: keep reading the account; report drift, or heal it within a budget and windows."""
