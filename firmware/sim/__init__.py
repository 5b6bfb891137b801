"""Simulated devices that behave like the real ones, for drills, the self-test and tests.

Like gpiozero's ``pins/mock.py``, the fakes live together and apart from the drivers: the
``sim`` backend of ``firmware.hardware`` builds them, and nothing else ever falls back to
them. Each speaks its device's protocol rather than faking the driver's answers:

- ``i2c``: ``FakeSMBus``, an smbus2 stand-in that carries fake chips by address;
- ``thermometer``: ``FakeMLX90614`` (registers, PEC, injected faults) and ``SimThermometer``;
- ``rtc``: ``FakeDS3231``, the real-time clock's registers;
- ``render``: ``render_frame``, QR text into a camera frame with a drill's distortions;
- ``camera``: ``SimCamera`` and its render helper process;
- ``scanner``: ``SimScanner``, a scan gun that types through the real assembler.

Import rule: ``firmware.sim`` imports the drivers of ``firmware`` (never the other way
round, except ``firmware.hardware``, the composition root); nothing outside ``firmware``.
"""
