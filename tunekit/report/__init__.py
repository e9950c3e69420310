"""What a study learned, for people and pipes: summary, advice, table/JSON/CSV/markdown/HTML. Never imports torch."""
