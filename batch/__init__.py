"""Score files of beans from the command line (score.py), in chunks, with memory flat whatever the file's size.

- scoring.py: one table of beans scored, or refused row by row with the service's reasons (pure; Spark uses it too).
- files.py: streaming readers by the input's extension and writers by the output's (rejects beside the output).
- remote.py: the same scoring done by a running service over V2, several requests in flight.
- storing.py: the predictions recorded through the service's writer (exactly once, spooled when the database is down).
- run.py: the loop from reader to writers, with progress and the summary.
- spark.py: the same scoring applied by a PySpark job (mapInPandas), for score.py --spark.
"""
