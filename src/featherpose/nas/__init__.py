"""Lite Pose's weight-sharing architecture search (``featherpose search``): the search space (:mod:`.space`), the
super-network (:mod:`.supernet`), latency on this machine (:mod:`.latency`) and the search itself (:mod:`.search`)."""
