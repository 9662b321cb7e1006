"""spark-submit entry point: `spark-submit jobs/validate.py --conf flights.yml [...]`.

Same arguments as `mlops-spark validate`; see `mlops-spark validate --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
