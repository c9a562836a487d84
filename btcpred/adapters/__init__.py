"""One module per external system, each taking its own config section: the S3 lake and the bronze
archive, the model registry and its database, model artifacts, Binance REST and recorded capture
formats, Kinesis. Processes (ingest, flink_jobs, inference, reliability, batch) use these; these
use only ``common`` and the pure core (``udfs``). The rule is an import contract (``.importlinter``)."""
