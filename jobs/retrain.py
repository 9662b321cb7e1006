"""spark-submit entry point: `spark-submit jobs/retrain.py --conf flights.yml [...]`.

Same arguments as `mlops-spark retrain`; see `mlops-spark retrain --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain", *sys.argv[1:]]))
