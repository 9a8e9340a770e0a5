"""BulkInferrer: after the push, scores an unlabelled directory of CSV files."""
from components.bulk_inferrer.component import BulkInferrer  # noqa: F401
