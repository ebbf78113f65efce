"""Wire schemas of the Batch AI REST API (api-version 2018-05-01) and of batchai's own storage API."""
