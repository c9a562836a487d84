"""The prediction service: reads Redis only, predicts every 2 s, serves HTTP."""
