"""The traffic-management e2e scenarios (e2e/scenarios/test_traffic_management.py) as part of the main suite.

They skip when not root or while `meshlet up` does not exist; otherwise they
bring up a real local mesh (slow).
"""
from meshlet.e2e.scenarios.test_traffic_management import *
