"""spark-submit entry point: `spark-submit jobs/ingest.py --conf flights.yml [...]`.

Same arguments as `mlops-spark ingest`; see `mlops-spark ingest --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
