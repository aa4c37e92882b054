"""spendstream's client SDK: meter AI calls by metadata only."""
