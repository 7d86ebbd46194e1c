"""Watch mode: keep reading the account; report drift, or heal it within a budget and windows.

Its modules, one concept each: `config` (the options and the clock), `desired_file` (the file,
re-read when it changes), `watcher` (the loop and its triggers), `cycle` (what one cycle did),
`gates` (whether a drift may be healed now), `breaker` (the budget and the failure latch),
`heal` (one apply and its accounting), `eventlog` and `metrics` (what it tells), and `service`
(the client, signals and metrics server around the loop).
"""
