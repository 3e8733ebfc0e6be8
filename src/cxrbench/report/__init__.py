"""`cxrbench report`: one self-contained offline HTML page of a dataset's stored runs (docs/figures.md, "Report")."""

from cxrbench.report.build import ReportOptions, build_report, report_html

__all__ = ["ReportOptions", "build_report", "report_html"]
