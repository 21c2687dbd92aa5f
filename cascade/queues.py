"""Names of the Celery queues. Infrastructure (KEDA triggers) imports these: change them here only."""

STAGE1 = "stage1"
STAGE2 = "stage2"
CALLBACKS = "callbacks"
MAINTENANCE = "maintenance"

ALL = (STAGE1, STAGE2, CALLBACKS, MAINTENANCE)
# The queues whose depth drives autoscaling of GPU node pools.
GPU_QUEUES = (STAGE1, STAGE2)
