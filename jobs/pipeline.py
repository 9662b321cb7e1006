"""spark-submit entry point: `spark-submit jobs/pipeline.py --conf flights.yml [...]`.

Same arguments as `mlops-spark pipeline`; see `mlops-spark pipeline --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
