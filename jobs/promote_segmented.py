"""spark-submit entry point: `spark-submit jobs/promote_segmented.py --conf flights.yml [...]`.

Same arguments as `mlops-spark promote_segmented`; see `mlops-spark promote_segmented --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["promote_segmented", *sys.argv[1:]]))
