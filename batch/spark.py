"""Score beans on Spark: batch/scoring.py's `score_frame` applied by `mapInPandas`, the model loaded once per Python
worker (a module-level cache keyed by the model's source), from a BentoML model store or from a file that
`bentoml models export` wrote. The refused rows come out apart, with the reason and their row in the file.

PySpark is an optional extra (`pip install -e ".[batch]"`; Java 17), never in the served Bento or image.
"""

from __future__ import annotations

import functools
import os
import posixpath
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import bentoml
import pandas as pd
from bentoml._internal.models.model import ModelStore  # a store at a given BENTOML_HOME, as the tests open one
from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ConfigDict, model_validator
from pyspark import SparkConf, SparkFiles
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F  # Spark's own spelling
from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType

from api import errors
from batch.files import UNREADABLE, FileProblem
from batch.run import Summary
from batch.scoring import (
    CONSISTENT,
    IN_DISTRIBUTION,
    LABEL,
    NEEDS_REVIEW,
    PREDICTION_SET,
    PROBABILITY_COLUMNS,
    REASON,
    check_header,
    score_frame,
    split_valid,
)
from data.schema import CLASSES, FEATURES
from model.classifier import Classifier
from model.store import ModelUnavailable, load_model, load_tag

ROOT = Path(__file__).resolve().parents[1]
LOCAL_MASTER = "local[2]"
DEFAULT_TAG = "drybean_svc:latest"
EXPORTED_SUFFIX = ".bentomodel"
# What Spark reads and writes, by the path's extension (JSON Lines is Spark's "json": one object per line).
FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "json"}
UNSUPPORTED_ON_SPARK = "{path}: --spark reads and writes {formats} (the UCI .arff and .zip: score them without --spark)"
SPARK_ALONE = "--spark scores with the model on Spark: leave out --url and --store"
EXPORTED_MISSING = "{path}: no such file; export the model first: bentoml models export {tag} {path}"
_ROW = "__drybeans_row"  # the rejects' row in the input file, counted from 0 (dropped before writing)

_classifiers: dict[ModelSource, Classifier] = {}
_loads: Counter[ModelSource] = Counter()


class ModelSource(BaseModel):
    """Where every executor loads the model from: a tag in a BentoML model store (`home`: the BENTOML_HOME path
    on the executors; None: theirs), or an `exported` file (a local path, gs://, hdfs://...) that Spark ships to
    each executor."""

    model_config = ConfigDict(frozen=True)

    tag: str = DEFAULT_TAG
    home: str | None = None
    exported: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> ModelSource:
        if self.exported is not None and self.home is not None:
            raise ValueError("an exported model file carries its own store: give either exported or home")
        return self

    @classmethod
    def parse(cls, model: str, home: str | None = None) -> ModelSource:
        """score.py's --model: a file `bentoml models export` wrote (ending in .bentomodel), else a tag."""
        return cls(exported=model) if model.endswith(EXPORTED_SUFFIX) else cls(tag=model, home=home)


def classifier_for(source: ModelSource) -> Classifier:
    """The model of `source`, loaded at the first call in this process and kept for every later batch."""
    if source not in _classifiers:
        _classifiers[source] = _load(source)
        _loads[source] += 1
    return _classifiers[source]


def load_count(source: ModelSource) -> int:
    """How many times this process has loaded the model of `source` (1 after any number of batches)."""
    return _loads[source]


def score_batches(batches: Iterator[pd.DataFrame], *, source: ModelSource,
                  coverage: float) -> Iterator[pd.DataFrame]:
    """mapInPandas' function: each Arrow batch of beans scored; its refused rows left to `reject_batches`."""
    classifier = classifier_for(source)
    for batch in batches:
        yield score_frame(classifier, batch, coverage=coverage)[0]


def reject_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """mapInPandas' function for the refused rows with their reason, numbered by their row in the input (no model
    needed)."""
    for batch in batches:
        numbered = batch.drop(columns=_ROW).set_axis(pd.Index(batch[_ROW].to_numpy()), axis=0)
        rejects = split_valid(numbered)[2]
        if len(rejects):  # most batches have none
            yield rejects


def score_dataframe(spark_df: DataFrame, model_source: ModelSource,
                    coverage: float) -> tuple[DataFrame, DataFrame]:
    """(scored, rejects), both lazy: every input column kept (the features as doubles) plus the label, one
    probability per variety and the trust fields the model has; the refused rows with their `reason`. ValueError
    with the service's message when a feature is not a column; ModelUnavailable when the model cannot be loaded.

    The model is loaded here once (its fields decide the output's schema) and once in each executor's Python worker.
    Numbering the refused rows as the file does runs one job now, counting each input partition's rows."""
    check_header(spark_df.columns)
    spark = spark_df.sparkSession
    if model_source.exported is not None:
        _ship(spark, model_source)
    classifier = classifier_for(model_source)
    scored = spark_df.mapInPandas(functools.partial(score_batches, source=model_source, coverage=coverage),
                                  scored_schema(spark_df.schema, sets=classifier.conformal is not None,
                                                in_distribution=classifier.ood is not None))
    rejects = _numbered(spark_df).mapInPandas(reject_batches, rejects_schema(spark_df.schema))
    return scored, rejects


def scored_schema(input_schema: StructType, *, sets: bool, in_distribution: bool) -> StructType:
    """The input's columns (the features as doubles, as scoring casts them) and the columns scoring adds, in its
    order."""
    fields = [StructField(field.name, DoubleType()) if field.name in FEATURES else field for field in input_schema]
    fields.append(StructField(LABEL, StringType()))
    fields += [StructField(name, DoubleType()) for name in PROBABILITY_COLUMNS]
    if sets:
        fields.append(StructField(PREDICTION_SET, StringType()))
    fields += [StructField(NEEDS_REVIEW, BooleanType()), StructField(CONSISTENT, BooleanType())]
    if in_distribution:
        fields.append(StructField(IN_DISTRIBUTION, BooleanType()))
    return StructType(fields)


def rejects_schema(input_schema: StructType) -> StructType:
    """The input's columns as they were read, and the reason."""
    return StructType([*input_schema.fields, StructField(REASON, StringType())])


def session() -> SparkSession:
    """The cluster's session when spark-submit started this process (Dataproc); else a local one (local[2]) whose
    Python workers run this interpreter with the project on their path."""
    builder = SparkSession.builder.appName("drybeans-score")
    if not SparkConf().contains("spark.master"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (builder.master(LOCAL_MASTER).config("spark.ui.enabled", "false")
                   .config("spark.sql.shuffle.partitions", "2")
                   .config("spark.executorEnv.PYTHONPATH", str(ROOT)))
    return builder.getOrCreate()


def read_table(spark: SparkSession, uri: str) -> DataFrame:
    """A CSV (header, types inferred), Parquet or JSON Lines file (or directory of them), its column names stripped
    of spaces as the local reader strips them; FileProblem when it cannot be read."""
    reader = spark.read.option("header", True).option("inferSchema", True).format(_format(uri))
    try:
        frame = reader.load(uri)
    except AnalysisException as exc:  # no such path, or not in that format
        raise FileProblem(UNREADABLE.format(path=uri, reason=exc.getMessage())) from None
    return frame.toDF(*(name.strip().lstrip("\ufeff") for name in frame.columns))


def write_table(frame: DataFrame, uri: str) -> None:
    """Write `frame` as a directory of part files in the format of the path's extension, replacing what was there."""
    writer = frame.write.mode("overwrite").format(_format(uri))
    (writer.option("header", True) if _format(uri) == "csv" else writer).save(uri)


def rejects_uri(output: str) -> str:
    """Where the refused rows go: beside the output, `<stem>.rejects.<ext>` (batch/files.py's name)."""
    stem, suffix = posixpath.splitext(output)
    return f"{stem}.rejects{suffix}"


def uri(path: Path) -> str:
    """A path given on the command line as Spark needs it (argparse's Path turns gs://bucket into gs:/bucket)."""
    text = str(path)
    scheme, separator, rest = text.partition(":/")
    if separator and scheme.isalnum() and len(scheme) > 1 and not rest.startswith("/"):
        return f"{scheme}://{rest}"
    return text


def score_file_on_spark(input_uri: str, output_uri: str, source: ModelSource, coverage: float) -> Summary:
    """score.py --spark: read with Spark, score, write the output and its rejects (directories of part files),
    counting rows per variety while writing."""
    _format(output_uri)
    start = time.perf_counter()
    spark = session()
    scored, rejects = score_dataframe(read_table(spark, input_uri), source, coverage)
    scored_counts, rejects_counts = Observation("scored"), Observation("rejects")
    write_table(scored.observe(scored_counts, *_per_variety()), output_uri)
    write_table(rejects.observe(rejects_counts, F.count(F.lit(1)).alias("rows")), rejects_uri(output_uri))
    varieties = Counter({variety: int(scored_counts.get[variety]) for variety in CLASSES})
    refused = int(rejects_counts.get["rows"])
    return Summary(rows=varieties.total() + refused, refused=refused, seconds=time.perf_counter() - start,
                   varieties=varieties)


def _per_variety() -> list[Column]:
    return [F.count(F.when(F.col(LABEL) == variety, 1)).alias(variety) for variety in CLASSES]


def _format(uri: str) -> str:
    suffix = posixpath.splitext(uri.rstrip("/"))[1].lower()
    if suffix not in FORMATS:
        raise FileProblem(UNSUPPORTED_ON_SPARK.format(path=uri, formats=", ".join(FORMATS)))
    return FORMATS[suffix]


def _numbered(spark_df: DataFrame) -> DataFrame:
    """The input with each row's place in it (from 0): each partition's offset from one count per partition, plus
    the row's place in its partition (monotonically_increasing_id: the partition's index << 33, plus the place)."""
    partition = F.spark_partition_id()
    counts: dict[int, int] = dict(spark_df.groupBy(partition.alias("partition")).count().collect())
    offsets, total = [], 0
    for index in range(max(counts, default=-1) + 1):
        offsets += [F.lit(index), F.lit(total)]
        total += counts.get(index, 0)
    offset = F.element_at(F.create_map(*offsets), partition) if offsets else F.lit(0)
    place = F.monotonically_increasing_id() - F.shiftleft(partition.cast(LongType()), 33)
    return spark_df.withColumn(_ROW, offset + place)


def _ship(spark: SparkSession, source: ModelSource) -> None:
    """Send the exported model file to every executor (Spark fetches gs:// and hdfs:// paths itself)."""
    exported = str(source.exported)
    if "://" not in exported and not Path(exported).is_file():
        raise ModelUnavailable(EXPORTED_MISSING.format(path=exported, tag=DEFAULT_TAG))
    spark.sparkContext.addFile(exported)


def _load(source: ModelSource) -> Classifier:
    """Load and check the model, as the service checks its own."""
    if source.exported is None:
        return load_tag(source.tag, source.home)
    with tempfile.TemporaryDirectory(prefix="drybeans-model-") as directory:  # the pickle is read whole, then gone
        local = SparkFiles.get(posixpath.basename(source.exported))
        try:
            model = bentoml.models.import_model(local, _model_store=ModelStore(directory))
        except (BentoMLException, OSError, ValueError) as exc:
            raise ModelUnavailable(errors.UNUSABLE_CANDIDATE.format(tag=source.exported, reason=exc)) from None
        return load_model(model, shown_as=source.exported)
