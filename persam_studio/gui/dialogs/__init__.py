"""Dialogs of the app: model (download or choose), settings, export, shortcuts."""
