"""Time-series forecasting: long-format series files, statistical models (statsforecast)
chosen per series by rolling-origin cross-validation, MASE and interval coverage against a
seasonal naive baseline, and the served artifact."""
