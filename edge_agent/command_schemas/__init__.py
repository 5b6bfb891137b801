"""JSON Schemas of the commands a gateway may send to a station (package data)."""
