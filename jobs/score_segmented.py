"""spark-submit entry point: `spark-submit jobs/score_segmented.py --conf flights.yml [...]`.

Same arguments as `mlops-spark score_segmented`; see `mlops-spark score_segmented --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["score_segmented", *sys.argv[1:]]))
