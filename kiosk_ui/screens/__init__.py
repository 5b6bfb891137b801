"""The Kivy screens: the only room of the kiosk that imports Kivy."""
