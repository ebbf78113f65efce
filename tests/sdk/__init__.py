"""The official Azure Python SDK against a real batchai server (each SDK version in its own venv)."""
