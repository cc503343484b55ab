"""Authentication: who is calling. API keys now; signed tokens and a key database later."""
