"""The weekly review (周报 / 复盘): docs/feedback.md, Weekly review."""
