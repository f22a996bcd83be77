"""The parts of ``tidal.deploy.service.ServiceManager``, one job each.

``files`` names a service's folder and writes its JSON; ``records`` reads and writes its row as
``ServiceInfo``; ``keys`` keeps its keys; ``placement`` lays out the models and app a
generation runs and describes it for the host; ``lifecycle`` creates, starts and stops the
host process; ``rollout`` hands the host a new generation and waits for it; ``calls`` POSTs to
the scoring URI.
"""
