"""The plain values the reconciler reasons about: the account, the desired state, intents and plans.

Pure data: no network, no clock, no command line. Every other layer imports these; these import
none of them.
"""
