"""Paper-ready outputs of a study: tables (CSV, LaTeX, Markdown), figures (PDF, PNG, CSV),
report.html and a README, from the results store alone (docs/report.md).

No torch and no Ray: `heartbeatai report` runs wherever the store can be read.
"""

# The table formats a report writes (html: report.html). Declared here, where the command line
# reads it without importing pandas or matplotlib.
FORMATS = ("csv", "tex", "md", "html")
