"""What every spendstream service must agree on: the event schema, topics, settings, crypto
(the privacy guard is its own dependency-free library, spendstream.guard)."""
