"""PKCS#11 v2.40 (and v3.0 interface discovery) module serving the qrng entropy core."""

__all__: list[str] = []
