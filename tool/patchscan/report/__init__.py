"""Report writers: the CSV (streamed), the JSON summary and the HTML report, all atomic."""
