"""tradovate-async: an asyncio client for the Tradovate (NinjaTrader) API."""
