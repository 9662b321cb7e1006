"""The resolved configuration of one use case: every section in one validated object."""

from __future__ import annotations

from pydantic import Field

from mlops_spark.config.model import ModelConfig, PromotionConfig, ScoringConfig, SplitConfig
from mlops_spark.config.operations import MonitoringConfig, ResourcesConfig, SegmentedConfig
from mlops_spark.config.schema import (
    FeatureSpec,
    LakeConfig,
    MlflowConfig,
    SourceConfig,
    SparkConfig,
    StrictModel,
    ValidationConfig,
)


class AppConfig(StrictModel):
    """The resolved configuration of one use case."""

    project: str = "mlops-spark"
    lake: LakeConfig = Field(default_factory=LakeConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    features: FeatureSpec
    model: ModelConfig
    split: SplitConfig
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    segmented: SegmentedConfig | None = None
