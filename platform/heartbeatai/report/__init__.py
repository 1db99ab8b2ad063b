"""Paper-ready outputs of a study: tables (CSV, LaTeX, Markdown), figures (PDF, PNG, CSV),
report.html and a README, from the results store alone (docs/report.md).

No torch and no Ray: `heartbeatai report` runs wherever the store can be read.
"""
