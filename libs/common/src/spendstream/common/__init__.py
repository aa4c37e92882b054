"""What every spendstream service must agree on: the event schema, topics, privacy guard, settings, crypto."""
