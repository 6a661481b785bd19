"""Prometheus metrics of the gliomagrade model servers (exported on the ModelServer's ``/metrics``).

Every name is listed in docs/serving.md (alert rules and the Grafana dashboard are written against them).
They live in prometheus_client's default registry, which KServe's ``/metrics`` endpoint exposes next to
its own ``request_preprocess_seconds``/``request_predict_seconds``/``request_postprocess_seconds``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, Info

STAGES = ("decode", "preprocess", "predict", "cam", "encode")
"""Transformer stages timed per request (``predict`` = round trip to the predictor)."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_PROB_BUCKETS = tuple(i / 10 for i in range(1, 11))

STAGE_SECONDS = Histogram(
    "gliomagrade_stage_seconds", "Latency of one transformer stage per request.",
    ["model", "stage"], buckets=_LATENCY_BUCKETS,
)
PREDICTOR_SECONDS = Histogram(
    "gliomagrade_predictor_inference_seconds", "onnxruntime session.run time in the predictor.",
    ["model"], buckets=_LATENCY_BUCKETS,
)
PREDICTIONS = Counter(
    "gliomagrade_predictions_total", "Predictions returned, by predicted class.", ["model", "version", "grade"],
)
REVIEW_FLAGS = Counter(
    "gliomagrade_needs_review_total", "Predictions flagged for human review, by reason.",
    ["model", "version", "reason"],
)
HIGH_GRADE_PROBABILITY = Histogram(
    "gliomagrade_high_grade_probability", "Calibrated probability of the highest grade class.",
    ["model", "version"], buckets=_PROB_BUCKETS,
)
INPUT_QC = Histogram(
    "gliomagrade_input_qc", "Input QC statistics of served cases (e.g. t1ce_brain_mean, brain_volume_ml).",
    ["model", "statistic"], buckets=(-1, 0, 1, 10, 50, 100, 250, 500, 1000, 1500, 2000, 5000, 1e4),
)
ERRORS = Counter(
    "gliomagrade_errors_total", "Requests that failed, by error kind (bad_request, payload_too_large, "
    "unsupported_media_type, preprocess, predictor_error, unavailable (overloaded or predictor down), predictor_timeout, internal).",
    ["model", "kind"],
)
IN_FLIGHT = Gauge("gliomagrade_in_flight_requests", "Inference requests being processed now.", ["server"])
MODEL_INFO = Gauge(
    "gliomagrade_model_info", "Constant 1 for the model version being served.", ["model", "version", "server"],
)
DRIFT_PSI = Gauge("gliomagrade_drift_psi", "Population stability index of the recent window vs reference.",
                  ["model", "version", "feature"])
DRIFT_KS = Gauge("gliomagrade_drift_ks", "Kolmogorov-Smirnov statistic of the recent window vs reference.",
                 ["model", "version", "feature"])
DRIFT_WINDOW = Gauge("gliomagrade_drift_window_count", "Values in the drift window.",
                     ["model", "version", "feature"])
BUILD = Info("gliomagrade_build", "gliomagrade package version of this server.")

ALL_METRICS = (STAGE_SECONDS, PREDICTOR_SECONDS, PREDICTIONS, REVIEW_FLAGS, HIGH_GRADE_PROBABILITY, INPUT_QC,
               ERRORS, IN_FLIGHT, MODEL_INFO, DRIFT_PSI, DRIFT_KS, DRIFT_WINDOW, BUILD)
