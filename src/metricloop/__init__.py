"""metricloop: close the loop on business metrics."""

__version__ = "0.1.0"
