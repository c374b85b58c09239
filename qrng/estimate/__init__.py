"""SP 800-90B min-entropy assessment: the non-IID track (section 6.3), the IID track (section 5) and the
restart tests (section 3.1.4)."""

__all__: list[str] = []
