"""The device platform: station configuration, drivers, QR decoding, boot files.

Import rule: nothing of ours. Every other package may import it; device libraries
(gpiozero, smbus2, picamera2, cv2, evdev, pyzbar, zxing-cpp) are imported only here, the
Pi-only ones lazily inside the adapter that needs them (tests/test_layers.py).
"""
