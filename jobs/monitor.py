"""spark-submit entry point: `spark-submit jobs/monitor.py --conf flights.yml [...]`.

Same arguments as `mlops-spark monitor`; see `mlops-spark monitor --help`.
"""

import sys

from mlops_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["monitor", *sys.argv[1:]]))
