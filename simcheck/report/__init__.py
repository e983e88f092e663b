"""What a check gives back: `CheckReport` (verdict, tables, certificate, save and load;
`check_report`), its figures (`figures`) and its HTML page (`html`)."""

from simcheck.report.check_report import CheckReport

__all__ = ["CheckReport"]
