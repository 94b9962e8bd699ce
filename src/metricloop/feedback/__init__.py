"""Feedback: people's labels on alerts, incidents and series ranges, and the quality KPIs built on them."""
