"""spark-submit entry point: `spark-submit jobs/promote.py --conf flights.yml [...]`.

Same arguments as `mlops-spark promote`; see `mlops-spark promote --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["promote", *sys.argv[1:]]))
