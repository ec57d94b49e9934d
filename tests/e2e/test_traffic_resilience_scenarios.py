"""The resilience e2e scenarios (e2e/scenarios/test_traffic_resilience.py) as part of the main suite.

Retries and their budget, connection-pool limits, outlier ejection; they skip
when not root or while `meshlet up` does not exist; otherwise they bring up a
small real local mesh (slow).
"""
from meshlet.e2e.scenarios.test_traffic_resilience import *
