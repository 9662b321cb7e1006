"""spark-submit entry point: `spark-submit jobs/train_segmented.py --conf flights.yml [...]`.

Same arguments as `mlops-spark train_segmented`; see `mlops-spark train_segmented --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train_segmented", *sys.argv[1:]]))
