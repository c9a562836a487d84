"""The training path (bronze -> silver -> feature store -> model); it reuses udfs/ for features."""
