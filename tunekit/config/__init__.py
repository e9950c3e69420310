"""From YAML text to a validated Config: YAML rules, dotted paths, sections, the search space, loading, the JSON schema."""
