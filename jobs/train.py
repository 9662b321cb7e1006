"""spark-submit entry point: `spark-submit jobs/train.py --conf flights.yml [...]`.

Same arguments as `mlops-spark train`; see `mlops-spark train --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
