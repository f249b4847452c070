"""Labels and annotations the TrainingJob controller writes: one place for every key."""

TRAININGJOB_LABEL = "stratus.dev/trainingjob"
ATTEMPT_LABEL = "stratus.dev/attempt"
TEAM_LABEL = "stratus.dev/team"
COST_CENTER_LABEL = "stratus.dev/cost-center"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
