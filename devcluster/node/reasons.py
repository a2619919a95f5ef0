"""Reasons and messages the process node writes into pod status and Events.

They are the kubelet's own words, so that tools and tests written against a real
cluster read this test bed the same way. Data only.
"""

from __future__ import annotations

# Container state reasons.
CONTAINER_CREATING = "ContainerCreating"
POD_INITIALIZING = "PodInitializing"
COMPLETED = "Completed"
ERROR = "Error"
OOM_KILLED = "OOMKilled"
START_ERROR = "StartError"
CRASH_LOOP_BACK_OFF = "CrashLoopBackOff"
ERR_IMAGE_PULL = "ErrImagePull"
CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
CONTAINER_STATUS_UNKNOWN = "ContainerStatusUnknown"

# Pod reasons.
DEADLINE_EXCEEDED = "DeadlineExceeded"
DEADLINE_EXCEEDED_MESSAGE = "Pod was active on the node longer than the specified deadline"
CONTAINER_STATUS_UNKNOWN_MESSAGE = "The container could not be located when the pod was terminated"

# Condition reasons.
CONTAINERS_NOT_READY = "ContainersNotReady"
CONTAINERS_NOT_INITIALIZED = "ContainersNotInitialized"
POD_COMPLETED = "PodCompleted"

# Event reasons.
PULLED = "Pulled"
CREATED = "Created"
STARTED = "Started"
KILLING = "Killing"
BACK_OFF = "BackOff"
FAILED = "Failed"
FAILED_MOUNT = "FailedMount"
