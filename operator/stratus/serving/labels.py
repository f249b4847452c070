"""Labels and annotations the InferenceService controller reads and writes."""

INFERENCESERVICE_LABEL = "stratus.dev/inferenceservice"
REVISION_LABEL = "stratus.dev/revision"
# Commands a person gives a rollout (`stratus promote|abort|retry`, or kubectl annotate). The
# value is any fresh token; the operator acts once per new value.
PROMOTE_ANNOTATION = "stratus.dev/promote"
PROMOTE_FULL_ANNOTATION = "stratus.dev/promote-full"
ABORT_ANNOTATION = "stratus.dev/abort"
RETRY_ANNOTATION = "stratus.dev/retry"
