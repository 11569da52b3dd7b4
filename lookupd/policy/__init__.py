"""Postfix policy delegation (`check_policy_service`): recipient quota and sending limits.

`request` frames the attribute protocol, `attributes` reads the values the decisions use with
their bounds, `rules` decides, `tables` loads the limits and full mailboxes, `server` serves
connections; the counts are `lookupd.counters`.
"""

from lookupd.policy.rules import PolicyConfig
from lookupd.policy.server import PolicyService, start_policy_service

__all__ = ["PolicyConfig", "PolicyService", "start_policy_service"]
