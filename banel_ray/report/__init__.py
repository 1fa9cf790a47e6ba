"""What the user sees: progress lines, the closing table, metrics files and plots."""

from banel_ray.report.console import MetricsWriter, closing_table, fmt_rate, progress_line, read_metrics
from banel_ray.report.plots import plot

__all__ = ["MetricsWriter", "closing_table", "fmt_rate", "plot", "progress_line", "read_metrics"]
