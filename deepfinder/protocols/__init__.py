"""Scipion protocols of the DeepFinder plugin."""
PROTOCOL_CLASSES = []
