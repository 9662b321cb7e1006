"""spark-submit entry point: `spark-submit jobs/features.py --conf flights.yml [...]`.

Same arguments as `mlops-spark features`; see `mlops-spark features --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
