"""classify: topics, clusters and stance for news page dumps."""

__version__ = "0.1.0"
