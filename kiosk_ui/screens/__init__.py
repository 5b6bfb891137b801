"""The Kivy screens: the only room of the kiosk that imports Kivy.

They import the kiosk around the core (``kiosk_ui.kiosk``, ``panel``, ``workers``) and the
core's words and views; nothing of ours imports them except ``station kiosk`` and the drills,
lazily, after ``kiosk_ui.kiosk_cli.prepare_kivy``. ``present`` imports no Kivy: what the
screens say is tested without a window.
"""
