"""Charges domain: Lua rules over a client-month's activity."""
