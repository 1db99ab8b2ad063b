"""The results store: schema, writer and reader of a study's tables (DESIGN.md, Results store).

No Ray and no torch here: the study writes through ``ResultsWriter`` and the dashboard
reads through ``ResultsStore``, so either side can run without the other's stack.
"""

from heartbeatai.results.reader import ResultsStore, TableStatus
from heartbeatai.results.schema import RUN_KEY, SCHEMA_VERSION, TABLES
from heartbeatai.results.summary import write_study_summary
from heartbeatai.results.writer import ResultsWriter
from heartbeatai.results.notebook import StudyResults, open_study

__all__ = ["RUN_KEY", "SCHEMA_VERSION", "TABLES", "ResultsStore", "ResultsWriter", "StudyResults", "TableStatus",
           "open_study", "write_study_summary"]
