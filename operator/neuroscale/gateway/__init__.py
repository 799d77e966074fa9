"""Gateway data plane: an OpenAI-compatible cascade over tiers with escalation, streaming and a response cache."""
