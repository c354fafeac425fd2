"""The UCI Dry Bean dataset: its schema (`data.schema`), readers (`data.readers`), download (`data.download`)
and where to find it (`data.acquire.load_dataset`).

Kept empty so that importing the schema alone, as the service does, does not load pandas and scipy.
"""
