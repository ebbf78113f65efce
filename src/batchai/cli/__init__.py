"""The ``batchai`` command line: the verbs and flags of ``az batchai``, ``az storage`` and ``az group``."""
