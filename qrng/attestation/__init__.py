"""Device attestation: how an entropy source proves what it is.

* :mod:`.statement`: the attestation statement (canonical JSON in a DSSE envelope, signed by a device key whose
  X.509 certificate, with its ``qrngDeviceInfo`` extension, chains to a manufacturer root), and the
  simulator's TEST-ONLY manufacturer CA;
* :mod:`.usb`: attestation over the USB device protocol (a fresh nonce, a counter that never repeats) and the
  firmware policy with firmware transparency.

qrngd's periodic re-attestation is :mod:`qrngd.attester`; a ceremony's is the ``attest_device`` step."""
