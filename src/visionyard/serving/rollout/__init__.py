"""The server's side of rollouts: following the registry's rollout state (``follower``), the
route that splits traffic (``routing``) and its figures (``stats``), shadow copies and their
agreement (``shadow``, ``agreement``), the data plane's routed calls (``routed``), the port to
the rollout core in :mod:`visionyard.monitor.rollout` (``port``) and the wiring into the server
(``wiring``)."""
