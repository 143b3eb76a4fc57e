"""Formats other tools read: monitoring-plugin lines, JUnit XML, Prometheus
textfiles, Grafana dashboards, and the run's outcome delivered to them even
when the run itself failed (`sinks`)."""
