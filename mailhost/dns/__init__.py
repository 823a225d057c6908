"""DNS as code: desired records (records.py) -> plan (plan.py) -> providers (providers/) -> sync.py."""
