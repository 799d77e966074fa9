"""Suite-wide pytest setup: shared server fixtures, and the model cache kept offline."""

import os

# The bundled MiniLM model loads from site-packages; nothing may reach a model hub from a test.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

pytest_plugins = ["tests.support.moto_server", "tests.support.prometheus_server", "tests.support.redis_server",
                  "tests.support.redis_cluster"]
