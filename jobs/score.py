"""spark-submit entry point: `spark-submit jobs/score.py --conf flights.yml [...]`.

Same arguments as `mlops-spark score`; see `mlops-spark score --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
