"""batchai: a self-hosted Batch AI (api-version 2018-05-01) for machines you own."""

__version__ = "0.1.0"
API_VERSION = "2018-05-01"
