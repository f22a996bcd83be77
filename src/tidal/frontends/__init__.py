"""Transports in front of the one ``InferenceServer`` facade."""
