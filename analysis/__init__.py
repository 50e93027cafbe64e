"""Turning a study (a folder of runs) into one pandas frame, paper-style tables, plots and an HTML report.

`python -m analysis.report <study dir>`
"""
