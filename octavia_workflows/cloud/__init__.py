"""The only code that talks to OpenStack (through openstacksdk).

``connect(name)`` returns a :class:`~octavia_workflows.cloud.client.Cloud`
for a clouds.yaml entry; its verb_noun methods return JSON-simple dicts
and raise only :class:`~octavia_workflows.exceptions.CloudError`
subclasses.  Only the cloud's *name* is ever stored or logged, never its
credentials.  openstacksdk is imported on first use, not at import time.
"""

from octavia_workflows.cloud.client import Cloud, connect

__all__ = ['Cloud', 'connect']
