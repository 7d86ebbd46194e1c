"""Apply: run a plan's intents safely through a venue, settle unknown outcomes, prove convergence.

The engine knows intents, never the wire: a `Venue` turns each intent into its call.
"""
