"""Checks around collection: the preflight (what to fix before the first run) and the drift watch
(new audit actions, before detections miss them). Providers add their own checks to both.
"""
