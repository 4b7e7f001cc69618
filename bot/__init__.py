"""protest-bot: answers questions about the June 2018 Amazon employee protest from news articles."""

__version__ = "0.1.0"
