"""Pure-Python market-data logic shared by the Flink job and the batch path.

Nothing in this package imports Flink, Redis or any I/O library, so the batch
(training) path computes exactly the numbers the streaming job computes.
"""
