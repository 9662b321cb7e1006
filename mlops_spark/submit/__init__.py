"""spark-submit.sh: `flags` (options, config, Spark flags), `packaging` (the wheel), `checks`
(master and tracking server), `command` (the spark-submit command line and ``main``)."""

from __future__ import annotations
