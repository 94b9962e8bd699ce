"""Detection: causal, seasonal, calendar-aware detectors that explain themselves.

    from metricloop.detect import get_detector, Calendar
    det = get_detector("auto", sensitivity=5).detect(values, times, calendar=Calendar())
    det.is_anomaly, det.expected, det.lower, det.upper, det.anomalies()
"""

from metricloop.detect.base import (
    Detector,
    DetectorConfig,
    Scores,
    detector_from_dict,
    detector_names,
    get_detector,
    register,
)
from metricloop.detect.calendar import Calendar, Event
from metricloop.detect.conditions import Detection, apply_conditions, default_direction
from metricloop.detect.stats import sensitivity_to_k

__all__ = [
    "Calendar",
    "Detection",
    "Detector",
    "DetectorConfig",
    "Event",
    "Scores",
    "apply_conditions",
    "default_direction",
    "detector_from_dict",
    "detector_names",
    "get_detector",
    "register",
    "sensitivity_to_k",
]
