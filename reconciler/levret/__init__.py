"""What the reconciler knows about the Levret wire, kept apart from the network.

The exchange documents request bodies only; every response shape is our reading of it, and
a real exchange may answer in other plausible forms. The parsers here accept those forms
(`fields`: numbers, times, enum spellings, field names; `parse`: entities, lists, pages) and
refuse, in one exact line, an answer whose *meaning* they cannot establish. They are pure:
raw JSON in, the models of `reconciler.model.account` out, no I/O.
"""
