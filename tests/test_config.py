from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mlops_spark.catalog import Catalog
from mlops_spark.cli import main as cli_main
from mlops_spark.config import load_config, parse_override
from mlops_spark.errors import ConfigError, UsageError

from .conftest import FLIGHTS_CONF


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


MINIMAL = """
features:
  base_table: t
  entity_id: {name: id, expr: "cast(k as string)"}
  event_time: ts
model:
  numeric: [x]
split:
  train: {from: 2020-01-01, to: 2020-01-31}
  test: {from: 2020-02-01, to: 2020-02-10}
"""


def test_flights_config_loads_with_every_layer() -> None:
    config = load_config(FLIGHTS_CONF, "local", ["model.params.maxIter=7", "lake.root=/x/lake"])
    assert config.model.params["maxIter"] == 7
    assert config.lake.root == "/x/lake"
    assert config.spark.master == "local[*]"
    assert config.split.train.start == dt.date(2013, 1, 1)
    assert config.model.resolved_task == "binary"
    assert Catalog(config).bronze("flights").path == "/x/lake/bronze/flights"


def test_layers_merge_in_order(tmp_path: Path) -> None:
    write(tmp_path, "base.yml", "lake: {root: /base}\nspark: {shuffle_partitions: 3}\n")
    conf = write(tmp_path, "use.yml", MINIMAL + "lake: {root: /use}\n")
    write(tmp_path, "dev.yml", "spark: {shuffle_partitions: 5}\n")
    config = load_config(conf, "dev", ["spark.app_name=x"])
    assert (config.lake.root, config.spark.shuffle_partitions, config.spark.app_name) == ("/use", 5, "x")


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    conf = write(tmp_path, "use.yml", MINIMAL + "modle: {}\n")
    with pytest.raises(ConfigError, match=r"use.yml: modle: unknown key"):
        load_config(conf)


def test_override_unknown_key_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"--set model.max_dpeth=3: model.max_dpeth: unknown key"):
        load_config(FLIGHTS_CONF, None, ["model.max_dpeth=3"])


def test_wrong_type_says_what_was_expected(tmp_path: Path) -> None:
    conf = write(tmp_path, "use.yml", MINIMAL + "spark: {shuffle_partitions: many}\n")
    with pytest.raises(ConfigError, match=r"spark.shuffle_partitions: .*integer"):
        load_config(conf)


def test_value_rule_is_checked(tmp_path: Path) -> None:
    conf = write(tmp_path, "use.yml", MINIMAL + "spark: {shuffle_partitions: 0}\n")
    with pytest.raises(ConfigError, match=r"spark.shuffle_partitions: .*greater than or equal to 1"):
        load_config(conf)


def test_missing_file_and_missing_env(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml")
    conf = write(tmp_path, "use.yml", MINIMAL)
    with pytest.raises(ConfigError, match="no overlay for environment 'prod'"):
        load_config(conf, "prod")


def test_bad_yaml_gives_line(tmp_path: Path) -> None:
    conf = write(tmp_path, "use.yml", "model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"use.yml:\d+"):
        load_config(conf)


def test_time_split_must_not_overlap(tmp_path: Path) -> None:
    conf = write(tmp_path, "use.yml", MINIMAL.replace("2020-02-01", "2020-01-15"))
    with pytest.raises(ConfigError, match="'test' must start after 'train' ends"):
        load_config(conf)


def test_env_variables_expand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = write(tmp_path, "use.yml", MINIMAL + "lake: {root: '${LAKE_X:-/fallback}'}\n")
    assert load_config(conf).lake.root == "/fallback"
    monkeypatch.setenv("LAKE_X", "s3a://b/lake")
    assert load_config(conf).lake.root == "s3a://b/lake"


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[x, y]") == (["a"], ["x", "y"])
    with pytest.raises(ConfigError):
        parse_override("novalue")
    with pytest.raises(ConfigError):
        parse_override("a..b=1")


def test_scoring_settings_come_from_config_set_and_method_flag() -> None:
    from mlops_spark import cli

    config = load_config(FLIGHTS_CONF, None, ["scoring.partitions_per_commit=7"])
    assert (config.scoring.method, config.scoring.partitions_per_commit) == ("auto", 7)
    assert config.scoring.arrow_batch_rows == 50_000
    with pytest.raises(ConfigError, match=r"scoring.method: .*'auto', 'compiled', 'transform' or 'arrow'"):
        load_config(FLIGHTS_CONF, None, ["scoring.method=fast"])
    with pytest.raises(ConfigError, match=r"scoring.partitions_per_commit: .*greater than or equal to 1"):
        load_config(FLIGHTS_CONF, None, ["scoring.partitions_per_commit=0"])
    ns = cli.build_parser().parse_args(["score", "--conf", str(FLIGHTS_CONF), "--method", "arrow"])
    assert ns.method == "arrow"
    with pytest.raises(UsageError, match=r"--method: invalid choice: 'fast'"):
        cli.build_parser().parse_args(["score", "--method", "fast"])


def test_set_merges_a_mapping_and_set_replace_replaces_it() -> None:
    from mlops_spark.config import Override

    # conf/flights.yml: params: {maxIter: 30, regParam: 0.001, elasticNetParam: 0.0}
    merged = load_config(FLIGHTS_CONF, None, ["model.params={maxIter: 50}"])
    assert merged.model.params == {"maxIter": 50, "regParam": 0.001, "elasticNetParam": 0.0}
    replaced = load_config(FLIGHTS_CONF, None, [Override("model.params={maxIter: 50}", replace=True)])
    assert replaced.model.params == {"maxIter": 50}
    # in command-line order: a merge after a replace adds to the replaced mapping, and a
    # replace after a merge drops it
    both = load_config(
        FLIGHTS_CONF,
        None,
        [Override("model.params={maxIter: 50}", replace=True), "model.params.regParam=0.1"],
    )
    assert both.model.params == {"maxIter": 50, "regParam": 0.1}
    last = load_config(
        FLIGHTS_CONF, None, ["model.params.regParam=0.1", Override("model.params={maxIter: 5}", replace=True)]
    )
    assert last.model.params == {"maxIter": 5}


def test_set_replace_of_a_section_names_itself_in_errors(tmp_path: Path) -> None:
    from mlops_spark.config import Override

    conf = write(tmp_path, "use.yml", MINIMAL)
    merged = load_config(conf, None, ["split.train={from: 2020-01-02}"])
    assert (merged.split.train.start, merged.split.train.end) == (dt.date(2020, 1, 2), dt.date(2020, 1, 31))
    # replacing drops the file's `to`, and the error names the override that did it
    with pytest.raises(
        ConfigError, match=r"^--set-replace split.train=\{from: 2020-01-02\}: split.train.to: required key"
    ):
        load_config(conf, None, [Override("split.train={from: 2020-01-02}", replace=True)])
    with pytest.raises(ConfigError, match=r"--set-replace 'nokey': expected key.path=value"):
        load_config(conf, None, [Override("nokey", replace=True)])


def test_cli_keeps_set_and_set_replace_in_order_and_documents_the_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlops_spark import cli
    from mlops_spark.config import Override

    argv = ["train", "--set-replace", "model.params={maxIter: 50}", "--set", "model.params.regParam=0.1"]
    ns = cli.build_parser().parse_args(argv)
    assert ns.overrides == [
        Override("model.params={maxIter: 50}", replace=True),
        Override("model.params.regParam=0.1", replace=False),
    ]
    assert load_config(FLIGHTS_CONF, None, ns.overrides).model.params == {"maxIter": 50, "regParam": 0.1}
    for job in ("train", "score", "pipeline"):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args([job, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--set-replace KEY.PATH=VALUE" in text
        assert "--set model.params={maxIter: 50} maxIter becomes 50, the file's other params stay" in text
        assert "--set-replace model.params={maxIter: 50} model.params is exactly {maxIter: 50}" in text


def test_estimator_params_are_checked_when_the_config_loads() -> None:
    # conf/flights.yml: logistic_regression, tuning over regParam and elasticNetParam
    with pytest.raises(ConfigError) as unknown:
        load_config(FLIGHTS_CONF, None, ["model.params.numTrees=3"])
    assert str(unknown.value).startswith(
        "--set model.params.numTrees=3: model.params.numTrees: logistic_regression has no parameter "
        "'numTrees' (it has: aggregationDepth, elasticNetParam, family, "
    )
    assert "maxIter, " in str(unknown.value)
    with pytest.raises(ConfigError, match=r"^--set model.params.maxIter=abc: model.params.maxIter: "):
        load_config(FLIGHTS_CONF, None, ["model.params.maxIter=abc"])
    with pytest.raises(
        ConfigError, match=r"logistic_regression's maxIter takes a whole number \(got 'abc'\)$"
    ):
        load_config(FLIGHTS_CONF, None, ["model.params.maxIter=abc"])
    with pytest.raises(
        ConfigError, match=r"logistic_regression's fitIntercept takes true or false \(got 1\)$"
    ):
        load_config(FLIGHTS_CONF, None, ["model.params.fitIntercept=1"])
    # whole floats are whole numbers for MLlib's toInt, as ints are numbers for toFloat
    ok = load_config(FLIGHTS_CONF, None, ["model.params={maxIter: 20.0, regParam: 1}"])
    assert ok.model.params["maxIter"] == 20.0


def test_switching_estimator_needs_its_own_params_and_search_space() -> None:
    from mlops_spark.config import Override

    # the file's logistic-regression params and search space do not fit a forest: every
    # offending key is named, with the file that set it
    with pytest.raises(ConfigError) as exc:
        load_config(FLIGHTS_CONF, None, ["model.estimator=random_forest_classifier"])
    problems = str(exc.value).split("; ")
    assert [p.split(": ")[1] for p in problems] == [
        "model.params.maxIter",
        "model.params.regParam",
        "model.params.elasticNetParam",
        "model.tuning.search_space.regParam",
        "model.tuning.search_space.elasticNetParam",
    ]
    assert all(p.startswith(f"{FLIGHTS_CONF}: ") for p in problems)
    with pytest.raises(
        ConfigError,
        match=r"model.tuning.search_space.maxDepth.options: random_forest_classifier's maxDepth takes "
        r"a whole number \(got 'deep'\)$",
    ):
        load_config(
            FLIGHTS_CONF,
            None,
            [
                "model.estimator=random_forest_classifier",
                Override("model.params={numTrees: 5}", replace=True),
                Override("model.tuning.search_space={maxDepth: {kind: choice, options: [3, deep]}}", True),
            ],
        )
    forest_config = load_config(
        FLIGHTS_CONF,
        None,
        [
            "model.estimator=random_forest_classifier",
            Override("model.params={numTrees: 5}", replace=True),
            Override("model.tuning.search_space={maxDepth: {kind: choice, options: [3, 5]}}", True),
        ],
    )
    assert forest_config.model.params == {"numTrees": 5}
    assert forest_config.model.tuning is not None
    assert list(forest_config.model.tuning.search_space) == ["maxDepth"]


def test_param_kinds_accept_what_mllib_type_converters_accept() -> None:
    """The pure checks agree with pyspark.ml's TypeConverters on every YAML-shaped value."""
    from pyspark.ml.param import TypeConverters

    from mlops_spark.config.estimators import CONVERTERS, accepts

    values: list[object] = [
        0,
        3,
        3.0,
        2.5,
        -1,
        True,
        False,
        "abc",
        "3",
        None,
        [],
        [1, 2.5],
        [1, "a"],
        {},
        [True],
    ]
    for kind, converter_name in CONVERTERS.items():
        converter = getattr(TypeConverters, converter_name)
        for value in values:
            try:
                converter(value)
                mllib = True
            except (TypeError, ValueError):
                mllib = False
            assert accepts(kind, value) == mllib, (kind, value)


def test_a_bad_estimator_param_fails_before_spark_starts(tmp_path: Path) -> None:
    """In a fresh process, as the CLI: exit 2 with the key named, and no SparkContext made."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pyspark import SparkContext\n"
        "from mlops_spark import cli\n"
        "code = cli.main(sys.argv[1:])\n"
        "print('spark started' if SparkContext._active_spark_context else 'no spark', code)\n"
    )
    argv = ["train", "--conf", str(FLIGHTS_CONF), "--set", "model.params.numTrees=3"]
    out = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.stdout.split() == ["no", "spark", "2"]
    assert out.stderr.startswith(
        "mlops-spark: error: --set model.params.numTrees=3: model.params.numTrees: logistic_regression has no"
    )


def test_print_config_shows_each_value_with_the_layer_that_set_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLOPS_SPARK_MASTER", "local[1]")
    args = ["train", "--conf", str(FLIGHTS_CONF), "--env", "local", "--set", "model.params.maxIter=7"]
    assert cli_main([*args, "--set-replace", "model.tuning={max_evals: 3}", "--print-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    conf_dir = FLIGHTS_CONF.parent
    for expected in (
        "model.params.maxIter: 7  # --set model.params.maxIter=7",
        f"model.params.regParam: 0.001  # {FLIGHTS_CONF}",
        "model.tuning.max_evals: 3  # --set-replace model.tuning={max_evals: 3}",
        "model.tuning.parallelism: 1  # default",  # dropped by --set-replace: the framework's default
        f'lake.root: "./lake"  # {conf_dir / "base.yml"}',
        f"spark.shuffle_partitions: 8  # {conf_dir / 'local.yml'}",
        "# at run time $MLOPS_SPARK_MASTER=local[1] wins over spark.master",
    ):
        assert expected in lines, expected
    keys = [line.split(":")[0] for line in lines if not line.startswith("#")]
    assert len(keys) == len(set(keys)) > 100
