"""Key ceremonies: YAML scripts checked against YAML policies, run on SoftHSM2 or a real HSM."""

__all__: list[str] = []
