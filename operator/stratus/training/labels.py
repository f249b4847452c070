"""Labels and annotations the TrainingJob controller writes: one place for every key
(the team and cost-center labels, which both controllers write, are in stratus.podspec)."""

TRAININGJOB_LABEL = "stratus.dev/trainingjob"
ATTEMPT_LABEL = "stratus.dev/attempt"
# On an attempt's Job and pods: spot or on-demand, what its GPU time is metered as.
CAPACITY_LABEL = "stratus.dev/capacity-type"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
