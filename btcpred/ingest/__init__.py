"""The exchange-facing side: capture loaders, the exchange simulator and the ingestor."""
