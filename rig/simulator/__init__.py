"""A Binance-like exchange replaying recorded real data over SBE WebSocket and REST."""
