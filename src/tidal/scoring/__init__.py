"""The scoring server: Azure ML-style ``score.py`` entry scripts served at ``/score``.

``tidal score`` runs a supervisor (``supervisor``) that binds one listening socket, optionally
starts the inference server, and keeps ``worker_count`` worker processes (``worker``) serving
that socket. Each worker loads the entry script (``entry``) and answers requests (``routes``).
"""

from tidal.scoring.settings import ScoreSettings

__all__ = ["ScoreSettings"]
